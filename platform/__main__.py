from litlab.cli import main  # the CLI is the installed package litlab; this package only keeps `python -m platform`

if __name__ == "__main__":
    main()
