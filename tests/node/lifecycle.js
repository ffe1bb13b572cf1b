// A Node gRPC client of gitpod-sim, sharing no code with it: @grpc/grpc-js with the .proto files
// loaded at run time by @grpc/proto-loader. Usage: node lifecycle.js HOST:PORT PROTO_DIR TOKEN
// Prints one JSON object with what it saw; exits non-zero on any unexpected error.
"use strict";
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir, token] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(protoDir, "gitpod/v1/workspaces.proto"), {
  includeDirs: [protoDir],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { WorkspacesService } = grpc.loadPackageDefinition(definition).gitpod.v1;
const client = new WorkspacesService(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${token}`);
const deadline = () => new Date(Date.now() + 10000);

const unary = (method, request, md = metadata) =>
  new Promise((resolve, reject) =>
    client[method](request, md, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply),
    ),
  );

const drain = (call, until) =>
  new Promise((resolve, reject) => {
    const seen = [];
    call.on("data", (message) => {
      seen.push(message);
      if (until && until(message)) {
        call.cancel();
        resolve(seen);
      }
    });
    call.on("error", (err) => (err.code === grpc.status.CANCELLED ? resolve(seen) : reject(err)));
    call.on("end", () => resolve(seen));
  });

async function main() {
  const out = {};
  const created = await unary("CreateAndStartWorkspace", {
    contextUrl: "https://github.com/gitpod-io/gitpod",
  });
  out.workspaceId = created.workspaceId;
  const { instance } = await unary("GetActiveWorkspaceInstance", {
    workspaceId: created.workspaceId,
  });
  const listen = client.ListenToWorkspaceInstance({ instanceId: instance.instanceId }, metadata, {
    deadline: deadline(),
  });
  const toRunning = await drain(listen, (m) => m.instanceStatus.phase === "PHASE_RUNNING");
  out.phases = toRunning.map((m) => m.instanceStatus.phase);
  out.statusVersions = toRunning.map((m) => m.instanceStatus.statusVersion);
  const stop = client.StopWorkspace({ workspaceId: created.workspaceId }, metadata, {
    deadline: deadline(),
  });
  out.stopMessages = (await drain(stop)).length;
  const after = await unary("GetWorkspace", { workspaceId: created.workspaceId });
  out.description = after.result.description;
  try {
    await unary("GetWorkspace", { workspaceId: "gitpodio-gitpod-zzzzzzzzzzz" });
    out.notFound = "no error";
  } catch (err) {
    out.notFound = { code: err.code, details: err.details };
  }
  try {
    await unary("ListWorkspaces", {}, new grpc.Metadata());
    out.unauthenticated = "no error";
  } catch (err) {
    out.unauthenticated = { code: err.code };
  }
  client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
