"""The plugin host and the hooks plugins implement (`hookspecs`): finding plugins, collecting their
components, containing their failures."""
