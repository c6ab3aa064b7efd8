#!/usr/bin/env python3
"""Lists a mailbox over IMAP the way a mail client reads it: STARTTLS, then LOGIN (the server
offers no login before TLS). Usage: inbox.py HOST USER [AT_LEAST], password in $IMAP_PASSWORD.
Prints one line per message (From, Subject, and the DKIM signer when the message is signed);
exits 1 when the login fails or the INBOX holds fewer than AT_LEAST messages."""
import email
import imaplib
import os
import re
import ssl
import sys

host, user = sys.argv[1], sys.argv[2]
at_least = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ctx = ssl.create_default_context()
ctx.check_hostname = False          # the demo's server has a self-signed certificate
ctx.verify_mode = ssl.CERT_NONE
try:
    m = imaplib.IMAP4(host, 143, timeout=30)
    m.starttls(ssl_context=ctx)
    m.login(user, os.environ["IMAP_PASSWORD"])
    m.select("INBOX", readonly=True)
    _, data = m.search(None, "ALL")
    numbers = data[0].split()
    for n in numbers:
        _, part = m.fetch(n, "(BODY.PEEK[HEADER])")
        msg = email.message_from_bytes(part[0][1])
        line = "  %s. From: %-28s Subject: %s" % (n.decode(), msg["From"], msg["Subject"])
        sig = msg.get("DKIM-Signature")
        if sig:
            tags = dict(re.findall(r"\b([ds])=([^;\s]+)", sig))
            line += "   [DKIM-signed d=%s s=%s]" % (tags.get("d"), tags.get("s"))
        print(line)
    m.logout()
except (OSError, imaplib.IMAP4.error) as e:
    print("inbox.py: %s: %s" % (host, e), file=sys.stderr)
    sys.exit(1)
if len(numbers) < at_least:
    print("inbox.py: %d messages, expected at least %d" % (len(numbers), at_least), file=sys.stderr)
    sys.exit(1)
