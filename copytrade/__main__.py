"""`python -m copytrade`: the same CLI as the `copytrade` console script."""

from copytrade.cli.app import main

if __name__ == "__main__":
    main()
