import airtable from './airtable.json' with { type: 'json' };
import atlassian from './atlassian.json' with { type: 'json' };
import box from './box.json' with { type: 'json' };
import discord from './discord.json' with { type: 'json' };
import dropbox from './dropbox.json' with { type: 'json' };
import figma from './figma.json' with { type: 'json' };
import githubApp from './github-app.json' with { type: 'json' };
import github from './github.json' with { type: 'json' };
import gitlab from './gitlab.json' with { type: 'json' };
import google from './google.json' with { type: 'json' };
import hubspot from './hubspot.json' with { type: 'json' };
import microsoftEntraId from './microsoft-entra-id.json' with { type: 'json' };
import notion from './notion.json' with { type: 'json' };
import oktaClientCredentials from './okta-client-credentials.json' with { type: 'json' };
import pipedrive from './pipedrive.json' with { type: 'json' };
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
import stripe from './stripe.json' with { type: 'json' };
import trello from './trello.json' with { type: 'json' };
import twilio from './twilio.json' with { type: 'json' };
import xero from './xero.json' with { type: 'json' };
import zendesk from './zendesk.json' with { type: 'json' };

import type { CatalogEntry } from '../catalog.ts';

/** Every catalog file, one import each (bundled with the functions: no file reads at run time). */
export const catalogFiles: readonly CatalogEntry[] = [
  airtable,
  atlassian,
  box,
  discord,
  dropbox,
  figma,
  github,
  githubApp,
  gitlab,
  google,
  hubspot,
  microsoftEntraId,
  notion,
  oktaClientCredentials,
  pipedrive,
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
  stripe,
  trello,
  twilio,
  xero,
  zendesk,
] as readonly CatalogEntry[];
