from unica.cli.main import main

main()
