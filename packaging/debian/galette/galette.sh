#!/bin/sh
# galette: the bundled CLI and controller on the Node runtime shipped with them.
exec /usr/lib/galette/node /usr/lib/galette/galette.mjs "$@"
