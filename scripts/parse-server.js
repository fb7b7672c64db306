#!/usr/bin/env node
// Runs one Parse Server for the integration tests, from the pinned install that
// `scripts/test-services install` makes ($PFM_TEST_PARSE_SERVER_DIR, default
// $PFM_SERVICES_DIR/parse-server). Normally started through `scripts/parse-server start`,
// which detaches it, waits for /parse/health and prints its pid.
//
// Usage: node scripts/parse-server.js --port N (--database NAME | --database-uri URI) [options]
//
//   --port N                  listen on 127.0.0.1:N, mount path /parse
//   --database NAME           the database NAME on the server of $PFM_TEST_MONGO_URI
//   --database-uri URI        or a complete databaseURI
//   --app-id ID               appId (default pfmApp)
//   --collection-prefix P     collectionPrefix (default none)
//   --public-server-url URL   publicServerURL (default http://127.0.0.1:N/parse, = serverURL)
//   --files ADAPTER           the files adapter:
//       default   Parse Server's own default: GridFS bucket fs, encrypted with the fileKey when
//                 one is set (Parse Server >= 4.3)
//       gridfs    GridFSBucketAdapter configured explicitly: encrypted only with
//                 $PFM_PS_ENCRYPTION_KEY (so fileKey can be set and files stay plain)
//       fs        @parse/fs-files-adapter: files at <--fs-root>/files/<--fs-subdir>/<encoded name>
//                 (the adapter resolves files/ against the working directory, which is
//                 --fs-root); encrypted only with $PFM_PS_ENCRYPTION_KEY
//       s3        @parse/s3-files-adapter on the local S3 server $PFM_TEST_S3_ENDPOINT
//                 (path-style, keys $PFM_TEST_S3_ACCESS_KEY/$PFM_TEST_S3_SECRET_KEY, default
//                 test/testsecret); key = --s3-prefix + name
//   --fs-root DIR             working directory for --files fs (required with it)
//   --fs-subdir SUB           the adapter's filesSubDirectory (default none)
//   --s3-bucket B             bucket for --files s3 (required with it; created if missing)
//   --s3-prefix P             the adapter's bucketPrefix (default none)
//   --exit-with PID           exit when process PID is gone (a test that dies leaves no server)
//   --cloud FILE              Cloud Code to load (Parse Server's `cloud` option), e.g. file
//                             triggers: Parse.Cloud.beforeFind(Parse.File, …)
//
// Secrets come from the environment only, never from arguments (which `ps` shows):
//   PFM_PS_MASTER_KEY (required), PFM_PS_FILE_KEY (optional fileKey),
//   PFM_PS_ENCRYPTION_KEY (optional, for --files gridfs|fs).
// Nothing secret is printed: the configuration summary names which keys are set, not their values.
'use strict';

const path = require('path');
const fs = require('fs');
const { createRequire } = require('module');

function fail(msg) {
  process.stderr.write(`parse-server.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const known = new Set([
    'port', 'database', 'database-uri', 'app-id', 'collection-prefix', 'public-server-url',
    'files', 'fs-root', 'fs-subdir', 's3-bucket', 's3-prefix', 'exit-with', 'cloud',
  ]);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m || !known.has(m[1])) fail(`unknown argument ${JSON.stringify(a)}`);
    let v = m[2];
    if (v === undefined) {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      v = argv[++i];
    }
    out[m[1]] = v;
  }
  return out;
}

// Put a database name into a MongoDB URI, keeping hosts and query (the test URI has none).
function withDatabase(uri, db) {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?(\?.*)?$/.exec(uri);
  if (!m) fail('PFM_TEST_MONGO_URI is not a mongodb:// URI');
  return `${m[1]}/${encodeURIComponent(db)}${m[3] || ''}`;
}

function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const port = Number(args.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port N is required');

  const installDir = env(
    'PFM_TEST_PARSE_SERVER_DIR',
    path.join(env('PFM_SERVICES_DIR', path.join(require('os').homedir(), '.cache/parse-files-migrate/services')), 'parse-server'),
  );
  if (!fs.existsSync(path.join(installDir, 'node_modules/parse-server/package.json'))) {
    fail(`no Parse Server install in ${installDir}; run scripts/test-services install`);
  }
  // Parse Server's default logger, created when the module loads, writes ./logs/ in the working
  // directory (the caller's checkout) unless this says "null"; logs go to stdout/stderr instead.
  process.env.PARSE_SERVER_LOGS_FOLDER = 'null';
  // Resolve every module from the install, not from this script's directory.
  const req = createRequire(path.join(installDir, 'package.json'));
  const { ParseServer } = req('parse-server');

  let databaseURI = args['database-uri'];
  if (!databaseURI) {
    if (!args.database) fail('--database NAME or --database-uri URI is required');
    const base = env('PFM_TEST_MONGO_URI');
    if (!base) fail('PFM_TEST_MONGO_URI is not set (eval "$(scripts/test-services start)")');
    databaseURI = withDatabase(base, args.database);
  }
  const masterKey = env('PFM_PS_MASTER_KEY');
  if (!masterKey) fail('PFM_PS_MASTER_KEY is not set');
  const fileKey = env('PFM_PS_FILE_KEY');
  const encryptionKey = env('PFM_PS_ENCRYPTION_KEY');
  const serverURL = `http://127.0.0.1:${port}/parse`;
  const appId = args['app-id'] || 'pfmApp';

  const options = {
    appId,
    masterKey,
    databaseURI,
    port,
    host: '127.0.0.1',
    mountPath: '/parse',
    serverURL,
    publicServerURL: args['public-server-url'] || serverURL,
    logsFolder: null,
    logLevel: 'warn',
    // Tests write with the master key from loopback only.
    masterKeyIps: ['127.0.0.1', '::1'],
    verifyServerUrl: false,
  };
  if (fileKey !== undefined) options.fileKey = fileKey;
  if (args['collection-prefix']) options.collectionPrefix = args['collection-prefix'];
  if (args.cloud) options.cloud = path.resolve(args.cloud);

  const files = args.files || 'default';
  let filesSummary;
  switch (files) {
    case 'default':
      filesSummary = `Parse Server default (GridFS, ${fileKey !== undefined ? 'encrypted with fileKey' : 'plain'})`;
      break;
    case 'gridfs': {
      const { GridFSBucketAdapter } = req('parse-server/lib/Adapters/Files/GridFSBucketAdapter');
      options.filesAdapter = new GridFSBucketAdapter(databaseURI, {}, encryptionKey);
      filesSummary = `GridFSBucketAdapter (${encryptionKey !== undefined ? 'encrypted' : 'plain'})`;
      break;
    }
    case 'fs': {
      const root = args['fs-root'];
      if (!root) fail('--files fs needs --fs-root DIR');
      fs.mkdirSync(root, { recursive: true });
      // @parse/fs-files-adapter resolves files/<filesSubDirectory> against the working directory.
      process.chdir(root);
      const FSFilesAdapter = req('@parse/fs-files-adapter');
      const o = {};
      if (args['fs-subdir']) o.filesSubDirectory = args['fs-subdir'];
      if (encryptionKey !== undefined) o.encryptionKey = encryptionKey;
      options.filesAdapter = new FSFilesAdapter(o);
      filesSummary = `@parse/fs-files-adapter at ${path.join(root, 'files', args['fs-subdir'] || '')} (${encryptionKey !== undefined ? 'encrypted' : 'plain'})`;
      break;
    }
    case 's3': {
      const bucket = args['s3-bucket'];
      if (!bucket) fail('--files s3 needs --s3-bucket B');
      const endpoint = env('PFM_TEST_S3_ENDPOINT');
      if (!endpoint) fail('PFM_TEST_S3_ENDPOINT is not set (eval "$(scripts/test-services start)")');
      const S3Adapter = req('@parse/s3-files-adapter');
      options.filesAdapter = new S3Adapter({
        bucket,
        bucketPrefix: args['s3-prefix'] || '',
        region: env('PFM_TEST_S3_REGION', 'us-east-1'),
        s3overrides: {
          endpoint,
          forcePathStyle: true,
          region: env('PFM_TEST_S3_REGION', 'us-east-1'),
          credentials: {
            accessKeyId: env('PFM_TEST_S3_ACCESS_KEY', 'test'),
            secretAccessKey: env('PFM_TEST_S3_SECRET_KEY', 'testsecret'),
          },
        },
      });
      filesSummary = `@parse/s3-files-adapter bucket ${bucket} prefix ${JSON.stringify(args['s3-prefix'] || '')} at ${endpoint}`;
      break;
    }
    default:
      fail(`--files must be default, gridfs, fs or s3, not ${JSON.stringify(files)}`);
  }

  if (args['exit-with']) {
    const parent = Number(args['exit-with']);
    setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch (e) {
        if (e.code === 'ESRCH') {
          process.stderr.write(`parse-server.js: process ${parent} is gone; exiting\n`);
          process.exit(0);
        }
      }
    }, 500).unref();
  }
  // Parse Server closes its server and connections on SIGTERM/SIGINT but may keep the event
  // loop alive for a while; make stopping by pid prompt.
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => setTimeout(() => process.exit(0), 2000).unref());
  }

  process.stdout.write(
    `parse-server.js: Parse Server ${req('parse-server/package.json').version} on ${serverURL}` +
      ` appId ${appId}, collectionPrefix ${JSON.stringify(options.collectionPrefix || '')},` +
      ` publicServerURL ${options.publicServerURL}, fileKey ${fileKey !== undefined ? 'set' : 'unset'},` +
      ` files: ${filesSummary}\n`,
  );
  await ParseServer.startApp(options);
  process.stdout.write(`parse-server.js: listening on ${serverURL}\n`);
}

main().catch(e => {
  process.stderr.write(`parse-server.js: failed to start: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
