"""llama-server's own endpoints on the proxy (/health, /props, /slots, /tokenize, /detokenize, /apply-template,
/completion, /infill): which model they mean, and errors in llama-server's shape. The routes are
proxy/routes/llama_server.py."""
