"""Entry of a consumer process: `python -m notifier.queue`, spawned by the server's pool.

The parent-death signal is armed before anything slow is imported, and then the parent is checked, so
a server that dies while its consumer is still starting leaves no orphan behind.
"""

import os
import signal
import sys

from ..procs import die_with_parent

die_with_parent(signal.SIGTERM)
if os.getppid() != int(os.environ.get("NOTIFIER_PARENT_PID", os.getppid())):
    sys.exit(0)

from .consumer import main  # noqa: E402  (after the parent check on purpose)

sys.exit(main())
