from stxbench.cli import main

main()
