import gc
import sys

# Start-up builds hundreds of thousands of long-lived objects (botocore's models, pydantic's
# schemas) and the collector would walk them over and over; runtime.start() freezes them and
# turns collection back on.
gc.disable()

from migrate.cli import main  # noqa: E402

sys.exit(main())
