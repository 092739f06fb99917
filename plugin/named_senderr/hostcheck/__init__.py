"""``named-senderr hostcheck``: kernel and BIND counters read beside the send-error log lines."""
