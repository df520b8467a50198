import { createHash } from 'node:crypto';
import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { Envelope } from '../crypto/envelope.ts';
import { deleteIfExists, isConditionalCheckFailed } from '../store/conditional.ts';
import { connectFlowPk, connectSessionPk } from '../store/table.ts';

/** SHA-256 (hex) of a bearer value: the table keeps only this, never the value itself. */
export function hashOf(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** What a connect session authorises: one consent flow for one connection. */
export interface ConnectSession {
  provider: string;
  connectionId: string;
  returnTo?: string;
  /** Per-connection values for the entry's URL templates (`connectionParams`); not secret. */
  connectionParams?: Record<string, string>;
  /** Epoch ms. */
  expiresAt: number;
  /** Epoch ms until which a start route holds the session (see claimSession); absent if free. */
  claimExpiresAt?: number;
}

/** A consent flow in progress, between the start route and the callback route. */
export interface ConnectFlow {
  provider: string;
  connectionId: string;
  returnTo?: string;
  /** Our state (also the flow id when the provider echoes it back). */
  state: string;
  /** The exact callback URL the provider was given. */
  callbackUrl: string;
  /** SHA-256 of the browser-binding cookie set by the start route. */
  browserHash: string;
  /** Kind-specific secrets (PKCE verifier, OAuth 1.0a request-token secret). */
  flowSecrets: Record<string, string>;
  /** Per-connection values for the entry's URL templates (`connectionParams`); not secret. */
  connectionParams?: Record<string, string>;
  /** Epoch ms. */
  expiresAt: number;
}

interface FlowItem {
  pk: string;
  type: 'connect-flow';
  // Not named provider/connectionId: only connection items may land in the by-provider index.
  flowProvider: string;
  flowConnectionId: string;
  returnTo?: string;
  callbackUrl: string;
  browserHash: string;
  connectionParams?: Record<string, string>;
  /** Envelope ciphertext of { state, flowSecrets }. */
  sealed: string;
  expiresAt: number;
  /** The table's TTL attribute (epoch seconds): DynamoDB removes the item after it. */
  ttl: number;
}

interface SessionItem {
  pk: string;
  type: 'connect-session';
  sessionProvider: string;
  sessionConnectionId: string;
  returnTo?: string;
  connectionParams?: Record<string, string>;
  expiresAt: number;
  /** The table's TTL attribute (epoch seconds): DynamoDB removes the item after it. */
  ttl: number;
  /** Random id of the start request holding the session, and until when (epoch ms). */
  claimedBy?: string;
  claimExpiresAt?: number;
}

/**
 * Connect sessions and consent flows in the token table. Both are keyed by the hash of their
 * bearer value (session token; flow handle), expire by TTL, and are consumed with a conditional
 * delete, so each is used at most once even under concurrent requests.
 */
export class FlowStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly envelope: Envelope,
  ) {}

  async putSession(tokenHash: string, session: ConnectSession): Promise<void> {
    const item: SessionItem = {
      pk: connectSessionPk(tokenHash),
      type: 'connect-session',
      sessionProvider: session.provider,
      sessionConnectionId: session.connectionId,
      ...(session.returnTo ? { returnTo: session.returnTo } : {}),
      ...(session.connectionParams ? { connectionParams: session.connectionParams } : {}),
      expiresAt: session.expiresAt,
      ttl: Math.ceil(session.expiresAt / 1000),
    };
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async getSession(tokenHash: string): Promise<ConnectSession | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: connectSessionPk(tokenHash) },
        ConsistentRead: true,
      }),
    );
    return out.Item ? sessionOf(out.Item as SessionItem) : undefined;
  }

  /**
   * Claims the session for one start request before any provider call: succeeds only if the
   * session exists for this provider, is unexpired and no other claim is live. Returns the
   * session, or undefined when the condition failed (someone holds it, or it is gone). A claim
   * lapses by itself at `claimExpiresAt`, so a start that crashed frees the link.
   */
  async claimSession(
    tokenHash: string,
    claim: { provider: string; claimant: string; now: number; until: number },
  ): Promise<ConnectSession | undefined> {
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: connectSessionPk(tokenHash) },
          UpdateExpression: 'SET claimedBy = :claimant, claimExpiresAt = :until',
          ConditionExpression:
            'attribute_exists(pk) AND sessionProvider = :provider AND expiresAt > :now AND ' +
            '(attribute_not_exists(claimExpiresAt) OR claimExpiresAt <= :now)',
          ExpressionAttributeValues: {
            ':claimant': claim.claimant,
            ':until': claim.until,
            ':provider': claim.provider,
            ':now': claim.now,
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return sessionOf(out.Attributes as SessionItem);
    } catch (error) {
      if (isConditionalCheckFailed(error)) return undefined;
      throw error;
    }
  }

  /** Gives a claimed session back (its start failed), so the link can be opened again at once. */
  async releaseSession(tokenHash: string, claimant: string): Promise<void> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: connectSessionPk(tokenHash) },
          UpdateExpression: 'REMOVE claimedBy, claimExpiresAt',
          ConditionExpression: 'claimedBy = :claimant',
          ExpressionAttributeValues: { ':claimant': claimant },
        }),
      );
    } catch (error) {
      // Gone or claimed anew after ours lapsed: nothing of ours to give back.
      if (!isConditionalCheckFailed(error)) throw error;
    }
  }

  /**
   * Deletes the session if this claimant still holds it; false if it lost the session (its claim
   * lapsed and another start took it, or it was consumed).
   */
  async consumeSession(tokenHash: string, claimant: string): Promise<boolean> {
    try {
      await this.db.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pk: connectSessionPk(tokenHash) },
          ConditionExpression: 'claimedBy = :claimant',
          ExpressionAttributeValues: { ':claimant': claimant },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }

  async putFlow(handleHash: string, flow: ConnectFlow): Promise<void> {
    const pk = connectFlowPk(handleHash);
    const item: FlowItem = {
      pk,
      type: 'connect-flow',
      flowProvider: flow.provider,
      flowConnectionId: flow.connectionId,
      ...(flow.returnTo ? { returnTo: flow.returnTo } : {}),
      callbackUrl: flow.callbackUrl,
      browserHash: flow.browserHash,
      ...(flow.connectionParams ? { connectionParams: flow.connectionParams } : {}),
      sealed: await this.envelope.encrypt(
        JSON.stringify({ state: flow.state, flowSecrets: flow.flowSecrets }),
        flowContext(flow.provider, handleHash),
      ),
      expiresAt: flow.expiresAt,
      ttl: Math.ceil(flow.expiresAt / 1000),
    };
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async getFlow(handleHash: string): Promise<ConnectFlow | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: connectFlowPk(handleHash) },
        ConsistentRead: true,
      }),
    );
    const item = out.Item as FlowItem | undefined;
    if (!item) return undefined;
    const { state, flowSecrets } = JSON.parse(
      await this.envelope.decrypt(item.sealed, flowContext(item.flowProvider, handleHash)),
    ) as { state: string; flowSecrets: Record<string, string> };
    return {
      provider: item.flowProvider,
      connectionId: item.flowConnectionId,
      ...(item.returnTo ? { returnTo: item.returnTo } : {}),
      state,
      callbackUrl: item.callbackUrl,
      browserHash: item.browserHash,
      flowSecrets,
      ...(item.connectionParams ? { connectionParams: item.connectionParams } : {}),
      expiresAt: item.expiresAt,
    };
  }

  /** Deletes the flow if it is still there; false if it was already consumed (a replay). */
  consumeFlow(handleHash: string): Promise<boolean> {
    return deleteIfExists(this.db, this.tableName, connectFlowPk(handleHash));
  }
}

function sessionOf(item: SessionItem): ConnectSession {
  return {
    provider: item.sessionProvider,
    connectionId: item.sessionConnectionId,
    ...(item.returnTo ? { returnTo: item.returnTo } : {}),
    ...(item.connectionParams ? { connectionParams: item.connectionParams } : {}),
    expiresAt: item.expiresAt,
    ...(item.claimExpiresAt !== undefined ? { claimExpiresAt: item.claimExpiresAt } : {}),
  };
}

/** Binds a flow's sealed secrets to its provider and flow: copied elsewhere, they won't decrypt. */
function flowContext(provider: string, handleHash: string) {
  return { purpose: 'connect-flow', provider, flow: handleHash };
}
