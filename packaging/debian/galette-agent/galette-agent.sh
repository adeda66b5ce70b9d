#!/bin/sh
# galette-agent: the bundled agent on the Node runtime shipped with it.
exec /usr/lib/galette-agent/node /usr/lib/galette-agent/galette-agent.mjs "$@"
