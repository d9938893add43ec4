"""schemathesis hooks for mediaq's document (tests/src/fuzz.rs and scripts/fuzz-api.sh load them
through SCHEMATHESIS_HOOKS): tus chunks are raw bytes, a media type schemathesis does not know."""
from hypothesis import strategies as st

import schemathesis

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
