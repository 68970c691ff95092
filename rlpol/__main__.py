"""``python -m rlpol``: the same CLI as the ``rlpol`` console script."""

from rlpol.cli import main

main()
