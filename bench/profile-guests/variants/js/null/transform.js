// Profile variant "null": the SDK's exportTransform dispatch, a user process that returns
// nothing without touching the event. raw-null + this = the SDK's per-event dispatch.
import { exportTransform } from "wrt-sdk";

class Null {
  constructor(config) {}
  process(event) {
    return [];
  }
}

export const transform = exportTransform(Null);
