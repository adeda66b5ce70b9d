#!/bin/sh
# galette-agent: the bundled agent on the Node runtime shipped with it, with the V8 flags it
# is measured with (node-flags: V8's interpreter only, a small young generation — the
# agent's JavaScript is not on the packet path, its memory is what a small device misses).
# shellcheck disable=SC2046 # the flags are words
exec /usr/lib/galette-agent/node $(cat /usr/lib/galette-agent/node-flags) /usr/lib/galette-agent/galette-agent.mjs "$@"
