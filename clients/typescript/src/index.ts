// A small typed helper over the generated Economy API (src/gen, from proto/ by
// `npm run generate`) for browser clients of the gateway over gRPC-web:
//
// - `createGatewayTransport`: a gRPC-web transport sending `authorization: Bearer <token>`;
// - `newIdempotencyKey` and `write`: a write with its `idempotency-key` header, answering
//   whether the gateway replayed a stored outcome (`idempotent-replayed: true`);
// - `errorInfo`: the `google.rpc.ErrorInfo` of a refusal, whose `reason` is stable.
//
// The rules these follow are in the repository's docs: authentication in
// docs/gateway.md ("Authentication"), retries in docs/idempotency.md, reasons in
// docs/errors.md.

import { ConnectError, type CallOptions, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb";

// One namespace per proto package (the packages share some message names).
export * as gatewayV1 from "./gen/economy/gateway/v1/gateway_pb";
export * as itemsV1 from "./gen/economy/items/v1/items_pb";
export * as ledgerV1 from "./gen/economy/ledger/v1/ledger_pb";
export * as marketV1 from "./gen/economy/market/v1/market_pb";
export * as redemptionV1 from "./gen/economy/redemption/v1/redemption_pb";
export { ErrorInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb";

/** The request header naming a write's idempotency record (docs/idempotency.md). */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
/** The answer header set to `true` when the gateway replayed a stored outcome. */
export const REPLAYED_HEADER = "idempotent-replayed";

/** Where the gateway is and who calls it. */
export interface GatewayOptions {
  /** The gateway's URL, e.g. `https://economy.example.com` or `http://127.0.0.1:50051`. */
  baseUrl: string;
  /** The bearer token (a JWT), sent as `authorization: Bearer <token>` on every call. */
  token: string;
}

/** A gRPC-web transport to the gateway authenticating every call with the token. */
export function createGatewayTransport(options: GatewayOptions): Transport {
  const bearer: Interceptor = (next) => async (request) => {
    request.header.set("authorization", `Bearer ${options.token}`);
    return next(request);
  };
  return createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors: [bearer] });
}

/** A fresh idempotency key: a random UUID, the form the gateway accepts. */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** A write's answer and whether the gateway replayed it. */
export interface WriteResult<Response> {
  response: Response;
  /** True when `idempotent-replayed: true`: an earlier call with the key already ran. */
  replayed: boolean;
}

/**
 * Calls `method` (a write of a Connect client, e.g. `ledger.convertAsset`) with the
 * `idempotency-key` header. Retrying with the same key and the same request never applies
 * the write twice: the gateway answers the stored outcome and `replayed` is true. Throws
 * the call's `ConnectError` on a refusal (see `errorInfo`).
 */
export async function write<Request, Response>(
  method: (request: Request, options?: CallOptions) => Promise<Response>,
  request: Request,
  idempotencyKey: string,
): Promise<WriteResult<Response>> {
  let replayed = false;
  const response = await method(request, {
    headers: { [IDEMPOTENCY_KEY_HEADER]: idempotencyKey },
    onHeader: (headers) => {
      replayed = headers.get(REPLAYED_HEADER) === "true";
    },
  });
  return { response, replayed };
}

/**
 * The `google.rpc.ErrorInfo` of a failed call (from `grpc-status-details-bin`), or
 * undefined when the error carries none. Its `reason` (e.g. `INSUFFICIENT_BALANCE`) is
 * the stable code to branch on; `metadata` holds its context.
 */
export function errorInfo(error: unknown): ErrorInfo | undefined {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0];
}
