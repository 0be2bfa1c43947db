// The example page's script: with a user's token, read the backpack, convert assets with
// an idempotency key, retry that write with the same key (the gateway replays it), and
// try a conversion the balance cannot cover (a refusal whose ErrorInfo is decoded).
// What happened is written into <pre id="result"> as JSON, `data-state` set to `done`
// (or `failed` with the error), so a person and tests/browser.rs read the same thing.
//
// Query parameters: gateway (URL), token (JWT), user (id), rule (conversion rule id),
// quantity (times to apply it; the refusal asks for 1000 times that).

import { ConnectError, createClient } from "@connectrpc/connect";
import { createGatewayTransport, errorInfo, gatewayV1, ledgerV1, newIdempotencyKey, write } from "../src/index";

const params = new URLSearchParams(location.search);
const required = (name: string): string => {
  const value = params.get(name);
  if (!value) throw new Error(`missing query parameter ${name}`);
  return value;
};

function balances(backpack: gatewayV1.GetBackpackResponse): Record<string, string> {
  return Object.fromEntries(backpack.assets.map((asset) => [asset.assetCode, asset.available.toString()]));
}

async function run(): Promise<unknown> {
  const transport = createGatewayTransport({ baseUrl: required("gateway"), token: required("token") });
  const backpack = createClient(gatewayV1.BackpackService, transport);
  const ledger = createClient(ledgerV1.LedgerService, transport);
  const userId = BigInt(required("user"));
  const ruleId = required("rule");
  const quantity = BigInt(required("quantity"));

  const before = await backpack.getBackpack({ userId });
  const key = newIdempotencyKey();
  const convert = { userId, ruleId, quantity };
  const first = await write(ledger.convertAsset, convert, key);
  const retry = await write(ledger.convertAsset, convert, key);
  const after = await backpack.getBackpack({ userId });

  let refusal: unknown = null;
  try {
    await write(ledger.convertAsset, { userId, ruleId, quantity: quantity * 1000n }, newIdempotencyKey());
  } catch (error) {
    const info = errorInfo(error);
    refusal = {
      code: ConnectError.from(error).code,
      reason: info?.reason ?? null,
      domain: info?.domain ?? null,
      metadata: info?.metadata ?? {},
    };
  }
  return {
    origin: location.origin,
    before: balances(before),
    write: { key, transaction: first.response.transaction?.id ?? null, replayed: first.replayed },
    retry: { key, transaction: retry.response.transaction?.id ?? null, replayed: retry.replayed },
    after: balances(after),
    refusal,
  };
}

const output = document.getElementById("result")!;
run().then(
  (result) => {
    output.textContent = JSON.stringify(result, null, 2);
    output.dataset.state = "done";
  },
  (error: unknown) => {
    output.textContent = JSON.stringify({ error: String(error) });
    output.dataset.state = "failed";
  },
);
