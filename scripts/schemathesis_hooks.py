"""Schemathesis hooks for scripts/schemathesis.sh (see scripts/schemathesis.toml).

Two things the OpenAPI document cannot say in a schema, and says in words:

- `from` and `to` of a range are related: `to` not before `from`, less than
  366 days after it. Generated pairs are put in order (to = from) when they
  are not, so a valid pair is what a valid request carries.
- A `/v1` read with `min_seq` past the projections answers 503 with
  Retry-After (documented), which the not_a_server_error check counts as a
  failure all the same. Exactly that answer is dropped: the 503's code is
  not_ready, it names the seq the request asked for, that seq is past where
  the projections are, and Retry-After is set. Every other failure stays.
"""

import re
from datetime import datetime, timedelta, timezone

import schemathesis

# Less than the server's 366 days, with room for any zone's offset.
LONGEST_RANGE = timedelta(days=360)
ZONE_MARGIN = timedelta(days=2)

NOT_REACHED = re.compile(
    r"the projections have not reached seq (\d+) yet \(they are at (\d+)\); retry later"
)


def instant(text):
    """A date (its midnight, UTC) or an RFC 3339 time; None otherwise."""
    if not isinstance(text, str):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Before every request of every phase (map_query misses the coverage
    phase's): a backwards or over-long range that is otherwise well formed
    becomes the one day or instant `from` names."""
    query = case.query
    if not query or "from" not in query or "to" not in query:
        return
    start, end = instant(query["from"]), instant(query["to"])
    if start is None or end is None:
        return
    if end < start + ZONE_MARGIN or end - start > LONGEST_RANGE:
        query["to"] = query["from"]


def header(response, name):
    values = response.headers.get(name.lower()) or []
    return values[0] if values else None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False (dropped) only for the documented 503 of a min_seq not reached."""
    if failure.code != "ST101" or response is None or response.status_code != 503:
        return True
    if header(response, "Retry-After") is None:
        return True
    asked = (case.query or {}).get("min_seq")
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    found = NOT_REACHED.fullmatch(error.get("message", ""))
    if error.get("code") != "not_ready" or found is None or asked is None:
        return True
    refused, position = int(found.group(1)), int(found.group(2))
    return not (int(asked) == refused and refused > position)
