from scenario.cli import main

main()
