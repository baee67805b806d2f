// The events a library call reports while it works: the engine's (resolve, plan, downloads, link)
// and push's (blobs, manifests, tags), each stamped with the event schema.
import { EngineEvents, type EngineEvent } from '../util/events.js';
import type { PushEvent } from '../push/push.js';
import { SCHEMAS } from './schema.js';

export type OcisaveEvent = { schema: typeof SCHEMAS.event } & (EngineEvent | PushEvent);
export type EventHandler = (e: OcisaveEvent) => void;

export function stamp(e: EngineEvent | PushEvent): OcisaveEvent {
  return { schema: SCHEMAS.event, ...e };
}

/** An engine event stream that forwards each event, stamped, to `onEvent` (if any). */
export function engineEvents(onEvent: EventHandler | undefined): EngineEvents {
  const events = new EngineEvents();
  if (onEvent) events.on((e) => onEvent(stamp(e)));
  return events;
}

/** A push event callback that forwards each event, stamped, to `onEvent` (if any). */
export function pushEvents(onEvent: EventHandler | undefined): ((e: PushEvent) => void) | undefined {
  return onEvent && ((e) => onEvent(stamp(e)));
}
