/**
 * Waiting for things that arrive later: a log of items; `waitFor` resolves with the first
 * item matching a predicate, however early it arrived, or rejects after a timeout. Used
 * instead of sleeping.
 */

export class EventLog {
  constructor() {
    this.items = [];
    this.waiters = new Set();
  }

  append(item) {
    this.items.push(item);
    for (const waiter of this.waiters) {
      if (waiter.match(item)) {
        this.waiters.delete(waiter);
        waiter.resolve(item);
      }
    }
  }

  /** The first item from index `start` on that matches; the timeout error names `what`. */
  waitFor(match, timeoutMs, what, start = 0) {
    const found = this.items.slice(start).find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }
}
