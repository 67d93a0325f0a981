"""The bad-input matrix's tables import their row types and checks from ``_matrix`` beside them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
