/** What a versioned update is conditional on, beside the version it read. */
export interface UpdateCondition {
  /** The version read: every update of a connection is conditional on it. */
  version: number;
  /** Only while this holder holds the lease (the fence of a lease holder's writes). */
  holder?: string;
  /** Only while no live lease is held at this instant (taking a lease, rescheduling). */
  noLiveLeaseAt?: number;
}

/**
 * Builds a connection item's UpdateItem expressions: SET and REMOVE clauses, conditional on the
 * version read and, as asked, on holding the lease or on no live lease. Every update of a
 * connection goes through it, so the fence is written once.
 */
export class VersionedUpdate {
  private readonly sets: string[] = [];
  private readonly removes: string[] = [];
  private readonly values: Record<string, unknown> = {};
  private readonly names: Record<string, string> = {};

  /** `#name` for attribute names that are DynamoDB reserved words (status). */
  set(name: string, value: unknown): this {
    const attribute = name.replace('#', '');
    if (name.startsWith('#')) this.names[name] = attribute;
    this.sets.push(`${name} = :${attribute}`);
    this.values[`:${attribute}`] = value;
    return this;
  }

  remove(...names: string[]): this {
    this.removes.push(...names);
    return this;
  }

  setOrRemove(name: string, value: unknown): this {
    return value === undefined ? this.remove(name) : this.set(name, value);
  }

  build(condition: UpdateCondition) {
    const clauses = [
      this.sets.length > 0 ? `SET ${this.sets.join(', ')}` : '',
      this.removes.length > 0 ? `REMOVE ${this.removes.join(', ')}` : '',
    ].filter(Boolean);
    const conditions = ['version = :expected'];
    const values: Record<string, unknown> = { ...this.values, ':expected': condition.version };
    if (condition.holder !== undefined) {
      conditions.push('leaseHolder = :holder');
      values[':holder'] = condition.holder;
    }
    if (condition.noLiveLeaseAt !== undefined) {
      conditions.push('(attribute_not_exists(leaseHolder) OR leaseExpiresAt < :now)');
      values[':now'] = condition.noLiveLeaseAt;
    }
    return {
      UpdateExpression: clauses.join(' '),
      ConditionExpression: conditions.join(' AND '),
      ...(Object.keys(this.names).length > 0 ? { ExpressionAttributeNames: this.names } : {}),
      ExpressionAttributeValues: values,
    };
  }
}
