"""What the proxy's and the backend's gunicorn setups share."""

# Never write query strings (signed URLs, tokens) into the access log: %(U)s is the path alone.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
