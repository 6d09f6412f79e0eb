"""CLI sub-commands besides ``serve``; each module registers itself with ``cli.command``."""
