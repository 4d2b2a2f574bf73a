"""The proxy's HTTP face: one blueprint a file, each view parsing, calling a service and answering."""
