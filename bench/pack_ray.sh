#!/usr/bin/env bash
# Ray for a device call: its cp312 wheel (79 MB) is larger than what one call carries, so this
# unpacks ray 2.60 and the dependencies the GPU image lacks, drops what a suite never imports
# (Java jars, RLlib, Data, Serve, LLM, Tune, Train, the dashboard's built web client) and
# writes .ray-site/ray-site.tar.xz (about 29 MB). On the device:
#   mkdir -p /tmp/ray && tar -xJf .ray-site/ray-site.tar.xz -C /tmp/ray
#   export PYTHONPATH=/tmp/ray/site:$PYTHONPATH
# (carry: [".whl", ".ray-site"]; add .ray-site/ to .git/info/exclude).
set -eu
work=$(mktemp -d)
pip download -q "ray==2.60.0" --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 -d "$work/wheels"
mkdir -p "$work/site"
for w in "$work"/wheels/{ray,click,msgpack,protobuf,jsonschema,jsonschema_specifications,referencing,rpds_py,attrs}-*.whl; do
  unzip -q -o "$w" -d "$work/site"
done
rm -rf "$work"/site/ray/{jars,rllib,data,serve,llm,tune,train} "$work/site/ray/dashboard/client/build"
mkdir -p .ray-site
(cd "$work" && tar -cf - site | xz -T0 -6 > "$OLDPWD/.ray-site/ray-site.tar.xz")
ls -la .ray-site/ray-site.tar.xz
rm -rf "$work"
