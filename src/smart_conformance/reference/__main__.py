"""``python -m smart_conformance.reference``: serve the reference payer (same as ``serve-reference``)."""

import sys

from smart_conformance.reference.server import main

sys.exit(main())
