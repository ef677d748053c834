from kezek.scenario.cli import main

main()
