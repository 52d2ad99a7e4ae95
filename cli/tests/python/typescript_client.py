#!/usr/bin/env python3
"""A host in TypeScript that writes no HTTP: a client generated from the OpenAPI document
protopay serves (`@hey-api/openapi-ts`: fetch client, zod validation) runs an escrow flow.

Starts `protopay-sim` and `protopay serve` (the escrow host's `serve`), fetches
`/v1/openapi.json`, generates a client from it beside `../typescript/flow.ts`, compiles both
with `tsc` (strict: a document that types an answer wrongly fails here, before anything runs)
and runs the flow with Node.js, whose every call zod checks against the document.

Needs `../typescript/node_modules` (`npm ci --prefix cli/tests/typescript`: the generator,
TypeScript and zod, at the versions its lock file pins) and `node` on PATH.

    python3 typescript_client.py PROTOPAY_BIN PROTOPAY_SIM_BIN WORK_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request

from escrow_host import OPERATE, READ, expect, serve

HOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "typescript")


def run(what, args, cwd, env=None):
    """Run a step of the build or the flow; its output, or the reason it failed."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    expect(done.returncode == 0, f"{what}: {done.stdout} {done.stderr}")
    return done.stdout + done.stderr


def build(api, work):
    """The host's directory: the generated client beside flow.ts, compiled."""
    project = os.path.join(work, "typescript")
    os.makedirs(project)
    for name in ("package.json", "tsconfig.json", "flow.ts"):
        shutil.copy(os.path.join(HOST, name), project)
    os.symlink(os.path.abspath(os.path.join(HOST, "node_modules")), os.path.join(project, "node_modules"))
    with urllib.request.urlopen(f"{api}/v1/openapi.json", timeout=30) as r:
        document = json.load(r)
    with open(os.path.join(project, "openapi.json"), "w") as f:
        json.dump(document, f)
    with open(os.path.join(project, "openapi-ts.config.mjs"), "w") as f:
        f.write(
            "export default {\n"
            '  input: "openapi.json",\n'
            '  output: "client",\n'
            '  plugins: ["@hey-api/client-fetch", "zod", { name: "@hey-api/sdk", validator: true }],\n'
            "};\n"
        )
    bin_dir = os.path.join(project, "node_modules", ".bin")
    said = run("the generator accepts the document", [os.path.join(bin_dir, "openapi-ts")], project)
    expect("warn" not in said.lower(), f"and warns of nothing: {said}")
    run("the generated client and the flow compile (strict)", [os.path.join(bin_dir, "tsc"), "-p", "."], project)
    return project


def main():
    protopay, sim_bin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    api, simu, stop = serve(protopay, sim_bin, work)
    try:
        project = build(api, work)
        env = dict(os.environ, PROTOPAY_API=api, PROTOPAY_SIM=simu, OPERATE_TOKEN=OPERATE, READ_TOKEN=READ)
        said = run("the flow", ["node", os.path.join("build", "flow.js")], project, env)
        expect("escrow flow through /v1 passed" in said, said)
    finally:
        stop()
    print("typescript client: escrow flow through /v1 passed")


if __name__ == "__main__":
    main()
