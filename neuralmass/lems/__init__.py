"""Read RateML-dialect LEMS XML models (``docs/xml.md`` describes the dialect)."""

from ._expression import FUNCTIONS as FUNCTIONS
from ._expression import parse_expression as parse_expression
from ._header import header as header
from ._reader import MAX_ELEMENTS as MAX_ELEMENTS
from ._reader import MAX_FILE_BYTES as MAX_FILE_BYTES
from ._reader import load as load
from ._reader import loads as loads
