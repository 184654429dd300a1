"""What a tools/ module that is a library, not a command, answers when it is
run as one: its usage line (what to run instead) and exit 0 for -h/--help,
or the same on stderr and exit 2 otherwise, as argparse does, instead of a
traceback from an import that only its caller's sys.path satisfies.

    if __name__ == "__main__":          # before the imports that need the caller's path
        from libscript import not_a_command
        not_a_command(__doc__, "tools/headend.py ... rollout --help")
"""

import sys


def not_a_command(doc, instead):
    script = sys.argv[0]
    first = (doc or "").strip().split("\n\n")[0]
    text = (f"usage: {instead}\n\n{script} is a library, not a command; it has no options."
            f"\n\n{first}\n")
    asked = any(a in ("-h", "--help") for a in sys.argv[1:])
    (sys.stdout if asked else sys.stderr).write(text)
    sys.exit(0 if asked else 2)


if __name__ == "__main__":
    not_a_command(__doc__, "from libscript import not_a_command  (in a tools/ library module)")
