"""unica.tsa: an RFC 3161 time-stamping authority (RFC 3161, RFC 5816, the EN 319 421/422 rules).

- :mod:`unica.tsa.units`: TSA units (key + ``timestamping`` certificate + policies + accuracy);
- :class:`Responder`: TimeStampReq -> TimeStampResp for one unit (library: no printing);
- :mod:`unica.tsa.clock`: the time source check (``timeNotAvailable`` while out of sync);
- :mod:`unica.tsa.archive`: every token issued recorded, in batches;
- :mod:`unica.tsa.http`: the HTTP front (``application/timestamp-query`` ->
  ``application/timestamp-reply``) that ``unica tsa serve`` runs.
"""

from unica.tsa.responder import MAX_REQUEST, Answer, Responder
from unica.tsa.units import (TSAUnitDisabled, TSAUnitExists, TSAUnitNotFound, UnitInfo, add_unit, disable_unit,
                             get_unit, list_units)

__all__ = ["Responder", "Answer", "MAX_REQUEST", "UnitInfo", "TSAUnitDisabled", "TSAUnitExists", "TSAUnitNotFound",
           "add_unit", "disable_unit", "get_unit", "list_units"]
