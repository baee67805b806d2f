// Versioned JSON: every result and every event the library hands out (and the CLI prints with
// --json) carries `schema: "ocisave.<name>/v<N>"`, the $id of its JSON Schema in src/api/schemas/.
// A consumer checks the name before reading; a breaking change bumps N.

export const SCHEMAS = {
  save: 'ocisave.save/v1',
  resolve: 'ocisave.resolve/v1',
  push: 'ocisave.push/v1',
  verify: 'ocisave.verify/v1',
  mirror: 'ocisave.mirror/v1',
  mirrorPlan: 'ocisave.mirror-plan/v1',
  serve: 'ocisave.serve/v1',
  unpack: 'ocisave.unpack/v1',
  merge: 'ocisave.merge/v1',
  convert: 'ocisave.convert/v1',
  listImages: 'ocisave.list-images/v1',
  cacheLs: 'ocisave.cache-ls/v1',
  cacheDu: 'ocisave.cache-du/v1',
  cacheVerify: 'ocisave.cache-verify/v1',
  cachePrune: 'ocisave.cache-prune/v1',
  event: 'ocisave.event/v1',
} as const;

export type SchemaName = (typeof SCHEMAS)[keyof typeof SCHEMAS];

/** `value` with its schema name in front (first key, so a reader of the raw JSON sees it first). */
export function versioned<S extends SchemaName, T extends object>(schema: S, value: T): { schema: S } & T {
  return { schema, ...value };
}
