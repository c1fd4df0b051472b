#!/bin/sh
# A stand-in service: it prints which secret variables it got (names only, never the
# values) and waits; SIGTERM makes it exit cleanly, SIGHUP makes it "reload".
trap 'echo "service: reloading"' HUP
trap 'echo "service: stopping"; exit 0' TERM INT
echo "service: started with ${GITHUB_TOKEN:+GITHUB_TOKEN }${NPM_TOKEN:+NPM_TOKEN}"
while :; do sleep 1 & wait $!; done
