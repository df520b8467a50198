import atlassian from './atlassian.json' with { type: 'json' };
import dropbox from './dropbox.json' with { type: 'json' };
import githubApp from './github-app.json' with { type: 'json' };
import github from './github.json' with { type: 'json' };
import google from './google.json' with { type: 'json' };
import hubspot from './hubspot.json' with { type: 'json' };
import microsoftEntraId from './microsoft-entra-id.json' with { type: 'json' };
import notion from './notion.json' with { type: 'json' };
import oktaClientCredentials from './okta-client-credentials.json' with { type: 'json' };
import quickbooks from './quickbooks.json' with { type: 'json' };
import quicko from './quicko.json' with { type: 'json' };
import quidkey from './quidkey.json' with { type: 'json' };
import quipt from './quipt.json' with { type: 'json' };
import quiqup from './quiqup.json' with { type: 'json' };
import salesforce from './salesforce.json' with { type: 'json' };
import sendgrid from './sendgrid.json' with { type: 'json' };
import shopify from './shopify.json' with { type: 'json' };
import slackUser from './slack-user.json' with { type: 'json' };
import slack from './slack.json' with { type: 'json' };
import twilio from './twilio.json' with { type: 'json' };
import xero from './xero.json' with { type: 'json' };
import zendesk from './zendesk.json' with { type: 'json' };

import type { CatalogEntry } from '../catalog.ts';

/** Every catalog file, one import each (bundled with the functions: no file reads at run time). */
export const catalogFiles: readonly CatalogEntry[] = [
  atlassian,
  dropbox,
  github,
  githubApp,
  google,
  hubspot,
  microsoftEntraId,
  notion,
  oktaClientCredentials,
  quickbooks,
  quicko,
  quidkey,
  quipt,
  quiqup,
  salesforce,
  sendgrid,
  shopify,
  slack,
  slackUser,
  twilio,
  xero,
  zendesk,
] as readonly CatalogEntry[];
