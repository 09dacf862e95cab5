"""The leaderboard: result records filed per protocol (`store`), verified (`verify`, `check`,
`rerun`), submitted (`submit`) and rendered into tables and plots (`render`)."""

from stxbench.leaderboard.store import DEFAULT_ROOT, Board, ProtocolLookup, entry_name

__all__ = ["DEFAULT_ROOT", "Board", "ProtocolLookup", "entry_name"]
