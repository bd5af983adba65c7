"""python -m runtime.daemon serve|send|watch|bench-protocol"""

from runtime.daemon.cli import main

raise SystemExit(main())
