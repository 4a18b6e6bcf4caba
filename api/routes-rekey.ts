/**
 * `GET /v1/rekey`, `POST /v1/rekey`: the rekey job of a key rotation (volume/policy/rekey-job.ts,
 * docs/encryption.md). GET says whether the backend is encrypted and where the job stands; POST starts it (or
 * joins the run in progress; a finished one stays done) and answers at once with its status — `vpoolfs rekey` polls GET for progress.
 * On a plain backend there is nothing to rewrite: both answer `{encrypted: false, job: null}`.
 * `GET /v1/backend-move`: the move job of a backend move (volume/policy/move-job.ts; it starts by itself at mount):
 * `{moving, job}`, job null when no move is in progress in this daemon.
 */
import type { ApiContext, Route } from './context.js';

function view(ctx: ApiContext) {
  return { encrypted: ctx.rekey !== undefined, job: ctx.rekey?.status() ?? null };
}

export const rekeyRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/rekey',
    summary: 'the key rotation: the rekey job and the key ids it retires',
    async handle(ctx) {
      return { status: 200, body: view(ctx) };
    },
  },
  {
    method: 'POST',
    pattern: '/v1/rekey',
    summary: 'start the rekey job (every object re-encrypted under the current key) or join the run in progress',
    async handle(ctx) {
      void ctx.rekey?.start();
      return { status: 200, body: view(ctx) };
    },
  },
  {
    method: 'GET',
    pattern: '/v1/backend-move',
    summary: 'the backend move: the move job copying the vPool to its new backend',
    async handle(ctx) {
      return { status: 200, body: { moving: ctx.move !== undefined, job: ctx.move?.status() ?? null } };
    },
  },
];
