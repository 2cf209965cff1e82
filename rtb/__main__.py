"""`python -m rtb`: the `rtb` command, for when the script is not on PATH."""

from rtb.cli import main

if __name__ == "__main__":
    # The same program name as the script: usage lines, and the completion variable (_RTB_COMPLETE).
    main()
