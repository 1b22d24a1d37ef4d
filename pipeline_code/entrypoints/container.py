"""Container dispatch: ``python3 -m pipeline_code.entrypoints.container train|serve``.

SageMaker starts training containers with the argument ``train`` and hosting containers with
``serve``; both Dockerfiles use this module as ENTRYPOINT. Imports are deferred so the serving image
(which lacks the training dependencies) never imports training code.
"""

from __future__ import annotations

import sys

USAGE = "usage: python3 -m pipeline_code.entrypoints.container {train|serve}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from pipeline_code.entrypoints.serve import main as serve_main

        return serve_main(rest) or 0
    if command == "train":
        from pipeline_code.entrypoints.training import main as train_main

        result = train_main()
        return result if isinstance(result, int) else 0
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
