from aetherflow.cli import main

main()
