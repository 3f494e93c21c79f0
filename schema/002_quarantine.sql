-- 002: the quarantine, where every rejected delivery is kept with its reason.
--
-- Nothing a provider sent is silently dropped: a delivery answered 400, 401,
-- 409 or 413 lands here, and `registrar quarantine readmit ID` can run it again
-- through the normal validation and append path. The table is bounded (see
-- quarantine::evict); evictions are counted in quarantine_evictions.

CREATE TABLE quarantine (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'jodo' or 'toolzz'.
    source         TEXT    NOT NULL,
    -- Unix microseconds UTC.
    received_at    INTEGER NOT NULL,
    -- The HTTP status the provider was answered with (400, 401, 409, 413).
    http_status    INTEGER NOT NULL,
    -- Machine-readable error code, as in the response.
    code           TEXT    NOT NULL,
    -- Human-readable reason, as in the response.
    reason         TEXT    NOT NULL,
    -- 1 when the delivery passed authentication (only a 401 is 0). When the
    -- quarantine is full, unauthenticated rows are evicted first.
    authenticated  INTEGER NOT NULL CHECK (authenticated IN (0, 1)),
    -- JSON object of the request headers that matter (never a secret).
    headers        TEXT    NOT NULL,
    -- The raw body, up to the configured size limit.
    body           BLOB    NOT NULL,
    -- 1 when the body was cut at the size limit (a 413).
    body_truncated INTEGER NOT NULL CHECK (body_truncated IN (0, 1)),
    -- Set when readmitted: when, and the seq the event got (or the seq of the
    -- original it duplicated).
    readmitted_at  INTEGER,
    readmitted_seq INTEGER
);

CREATE INDEX quarantine_by_auth ON quarantine (authenticated, id);

-- Counters that must survive restarts.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('quarantine_evictions', 0);
