"""What the proxy (`proxy/`) and the backend (`server/`) share, so that neither imports the other.

- naming.py      GGUF file names: quant grammar, split sets, model ids, the safe-name rule, id resolution
- gguf_check.py  the fast GGUF header scan; gguf_reader.py its bounded reader and InvalidGGUF
- errors.py      the error codes with their HTTP status, the error base and the one JSON error handler
- env.py         environment parsing, and settings fields that say which variable sets them
- serving.py     what both gunicorn setups share (the access-log format)
- hangup.py      noticing that an HTTP client went away while its request is still being worked on
- units.py       durations and sizes as people write them (`5m`, `-1`, `8GiB`)
- wire.py        the headers the proxy and the backend exchange beyond a body
"""
