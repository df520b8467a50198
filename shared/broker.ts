import { ConnectService } from './connect/connect-service.ts';
import { ConnectionsApi } from './connect/connections-api.ts';
import { FlowStore } from './connect/flow-store.ts';
import { ConnectionDirectory } from './store/connection-directory.ts';
import {
  createBrokerCore,
  getBrokerCore,
  setBroker,
  type BrokerCore,
  type BrokerDeps,
} from './broker-core.ts';

/**
 * One container's whole broker: the core (shared/broker-core.ts: tokens, refresher, store,
 * providers) and the connect services built on it, over the same table, envelope and providers.
 * The connect functions use it; the offline runtime builds one for every function.
 */
export interface Broker extends BrokerCore {
  connect: ConnectService;
  connections: ConnectionsApi;
}

export function createBroker(deps: BrokerDeps): Broker {
  return withConnect(createBrokerCore(deps));
}

/** The core with the connect flows and the connections API on top. */
function withConnect(core: BrokerCore): Broker {
  const { config, providers, store, events, now, logger } = core;
  const { db, name, envelope } = core.table;
  const directory = new ConnectionDirectory(db, name);
  const connect = new ConnectService({
    config,
    providers,
    flows: new FlowStore(db, name, envelope),
    store,
    directory,
    events,
    logger,
    now,
  });
  return {
    ...core,
    connect,
    connections: new ConnectionsApi({ providers, directory, connect, events, logger, now }),
  };
}

function isBroker(broker: BrokerCore): broker is Broker {
  return 'connect' in broker;
}

/**
 * The broker of this container, built on first use from the environment: the one installed, or
 * the core already built here with the connect services added (and installed in its place).
 */
export function getBroker(): Broker {
  const core = getBrokerCore();
  if (isBroker(core)) return core;
  const broker = withConnect(core);
  setBroker(broker);
  return broker;
}
