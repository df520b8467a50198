import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../shared/errors.ts';
import {
  normaliseRequest,
  oauth1Authorization,
  readOAuthForm,
  signatureBaseString,
} from '../shared/providers/oauth1-signing.ts';
import {
  oauth1BaseString,
  oauth1Signature,
  parseOAuthHeader,
} from '../infra/local/sandbox/quipt-sandbox.ts';

// RFC 5849's own examples, for the broker's signer (oauth-1.0a behind our normalisation) and for
// the sandbox's independent verifier: both must reproduce them, so neither can drift alone.

/** §1.2: printer.example.com's client credentials at photos.example.net. */
const photos = { consumerKey: 'dpf43f3p2l4k3l03', consumerSecret: 'kd94hf93k423kf44' };
/** §1.2 and §3.1 carry no oauth_version; the broker adds it only for Quipt. */
const rfc = { includeVersion: false } as const;

/** The header's parameters, decoded, as a server reads them (§3.5.1). */
function headerParams(header: string): Map<string, string> {
  const params = parseOAuthHeader(header);
  if (!(params instanceof Map)) throw new Error(`not an OAuth header: ${header}`);
  return params;
}

describe('RFC 5849 §1.2', () => {
  it('signs the temporary credentials request (initiate) as the RFC does', () => {
    const header = oauth1Authorization(
      { method: 'POST', url: 'https://photos.example.net/initiate' },
      photos,
      {
        ...rfc,
        now: 137131200_000,
        nonce: 'wIjqoS',
        protocolParams: { oauth_callback: 'http://printer.example.com/ready' },
      },
    );
    expect(header).toMatch(/^OAuth /);
    expect(header).toContain('oauth_callback="http%3A%2F%2Fprinter.example.com%2Fready"');
    expect(header).toContain('oauth_signature="74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D"');
    expect(Object.fromEntries(headerParams(header))).toEqual({
      oauth_consumer_key: 'dpf43f3p2l4k3l03',
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '137131200',
      oauth_nonce: 'wIjqoS',
      oauth_callback: 'http://printer.example.com/ready',
      oauth_signature: '74KNZJeDHnMBp0EMJ9ZHt/XKycU=',
    });
  });

  it('signs the token request with the temporary credentials and the verifier', () => {
    const header = oauth1Authorization(
      { method: 'POST', url: 'https://photos.example.net/token' },
      { ...photos, token: 'hh5s93j4hdidpola', tokenSecret: 'hdhd0244k9j7ao03' },
      {
        ...rfc,
        now: 137131201_000,
        nonce: 'walatlh',
        protocolParams: { oauth_verifier: 'hfdp7dh39dks9884' },
      },
    );
    const params = headerParams(header);
    expect(params.get('oauth_signature')).toBe('gKgrFCywp7rO0OXSjdot/IHF7IU=');
    expect(params.get('oauth_token')).toBe('hh5s93j4hdidpola');
    expect(params.get('oauth_verifier')).toBe('hfdp7dh39dks9884');
  });

  it('signs the protected resource request, query parameters included', () => {
    const header = oauth1Authorization(
      { method: 'GET', url: 'http://photos.example.net/photos?file=vacation.jpg&size=original' },
      { ...photos, token: 'nnch734d00sl2jdk', tokenSecret: 'pfkkdhi9sl3r4s00' },
      { ...rfc, now: 137131202_000, nonce: 'chapoH' },
    );
    expect(headerParams(header).get('oauth_signature')).toBe('MdpQcU8iPSUjWoN/UDMsK2sui9I=');
  });

  it('the sandbox verifier computes the same three signatures', () => {
    const common = { oauth_consumer_key: photos.consumerKey, oauth_signature_method: 'HMAC-SHA1' };
    const pairs = (params: Record<string, string>) => Object.entries({ ...common, ...params });
    expect(
      oauth1Signature(
        'POST',
        'https://photos.example.net/initiate',
        pairs({
          oauth_timestamp: '137131200',
          oauth_nonce: 'wIjqoS',
          oauth_callback: 'http://printer.example.com/ready',
        }),
        photos.consumerSecret,
        '',
      ),
    ).toBe('74KNZJeDHnMBp0EMJ9ZHt/XKycU=');
    expect(
      oauth1Signature(
        'POST',
        'https://photos.example.net/token',
        pairs({
          oauth_token: 'hh5s93j4hdidpola',
          oauth_timestamp: '137131201',
          oauth_nonce: 'walatlh',
          oauth_verifier: 'hfdp7dh39dks9884',
        }),
        photos.consumerSecret,
        'hdhd0244k9j7ao03',
      ),
    ).toBe('gKgrFCywp7rO0OXSjdot/IHF7IU=');
    expect(
      oauth1Signature(
        'GET',
        'http://photos.example.net/photos',
        [
          ['file', 'vacation.jpg'],
          ['size', 'original'],
          ...pairs({
            oauth_token: 'nnch734d00sl2jdk',
            oauth_timestamp: '137131202',
            oauth_nonce: 'chapoH',
          }),
        ],
        photos.consumerSecret,
        'pfkkdhi9sl3r4s00',
      ),
    ).toBe('MdpQcU8iPSUjWoN/UDMsK2sui9I=');
  });
});

describe('RFC 5849 §3.1 and §3.4.1', () => {
  // Percent-encoded query names (c%40), a value that decodes to "%3D" (b5), a repeated name across
  // query and form body (a3), "+" as a space in the body, a body parameter without "=" (c2).
  const request = {
    method: 'POST',
    url: 'http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b',
    body: 'c2&a3=2+q',
  };
  const protocol = {
    oauth_consumer_key: '9djdj82h48djs9d2',
    oauth_token: 'kkk9d7dh3k39sjv7',
    oauth_signature_method: 'HMAC-SHA1',
    oauth_timestamp: '137131201',
    oauth_nonce: '7d8f3e4a',
  };
  const expectedBaseString =
    'POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q' +
    '%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_' +
    'key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m' +
    'ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk' +
    '9d7dh3k39sjv7';
  const credentials = {
    consumerKey: '9djdj82h48djs9d2',
    consumerSecret: 'j49sk3j29djd',
    token: 'kkk9d7dh3k39sjv7',
    tokenSecret: 'dh893hdasih9',
  };

  it('builds the signature base string of §3.4.1.1 exactly', () => {
    expect(signatureBaseString(request, protocol)).toBe(expectedBaseString);
  });

  it('the library alone gets it wrong (why we normalise first)', async () => {
    const { default: OAuth } = await import('oauth-1.0a');
    const raw = new OAuth({
      consumer: { key: 'k', secret: 's' },
      signature_method: 'HMAC-SHA1',
      hash_function: () => '',
    });
    const naive = raw.getBaseString(
      {
        method: 'POST',
        url: request.url,
        data: Object.fromEntries(new URLSearchParams(request.body)),
      },
      { ...protocol } as never,
    );
    expect(naive).not.toBe(expectedBaseString);
  });

  it('signs with the errata-corrected signature, not the one printed in the RFC', () => {
    const header = oauth1Authorization(request, credentials, {
      ...rfc,
      now: 137131201_000,
      nonce: '7d8f3e4a',
    });
    const signature = headerParams(header).get('oauth_signature');
    // RFC 5849 errata: the printed "bYT5CMsGcbgUdFHObYMEfcx6bsw=" does not match the example.
    expect(signature).toBe('r6/TJjbCOr97/+UU0NsvSne7s5g=');
  });

  it('the sandbox verifier builds the same base string and signature', () => {
    const pairs: [string, string][] = [
      ['b5', '=%3D'],
      ['a3', 'a'],
      ['c@', ''],
      ['a2', 'r b'],
      ['c2', ''],
      ['a3', '2 q'],
      ...Object.entries(protocol),
    ];
    expect(oauth1BaseString('POST', 'http://example.com/request', pairs)).toBe(expectedBaseString);
    expect(
      oauth1Signature('POST', 'http://example.com/request', pairs, 'j49sk3j29djd', 'dh893hdasih9'),
    ).toBe('r6/TJjbCOr97/+UU0NsvSne7s5g=');
  });

  it('normalises the base string URI per §3.4.1.2', () => {
    expect(
      normaliseRequest({ method: 'get', url: 'HTTP://EXAMPLE.COM:80/r%20v/X?id=123' }),
    ).toMatchObject({
      method: 'GET',
      baseUri: 'http://example.com/r%20v/X',
      params: { id: '123' },
    });
    expect(
      normaliseRequest({ method: 'GET', url: 'https://www.example.net:8080/?q=1#frag' }).baseUri,
    ).toBe('https://www.example.net:8080/');
    expect(normaliseRequest({ method: 'GET', url: 'https://example.net:443' }).baseUri).toBe(
      'https://example.net/',
    );
  });
});

describe('the signer', () => {
  const credentials = { consumerKey: 'ck', consumerSecret: 'cs', token: 'tk', tokenSecret: 'ts' };

  it('adds oauth_version="1.0" and a fresh nonce by default', () => {
    const first = headerParams(
      oauth1Authorization({ method: 'GET', url: 'https://a.test/x' }, credentials, {
        now: 1_700_000_000_123,
      }),
    );
    const second = headerParams(
      oauth1Authorization({ method: 'GET', url: 'https://a.test/x' }, credentials, {
        now: 1_700_000_000_123,
      }),
    );
    expect(first.get('oauth_version')).toBe('1.0');
    expect(first.get('oauth_timestamp')).toBe('1700000000');
    expect(first.get('oauth_nonce')).toMatch(/^[0-9a-f]{32}$/);
    expect(first.get('oauth_nonce')).not.toBe(second.get('oauth_nonce'));
  });

  it('signs what the sandbox verifier recomputes, for repeated and encoded parameters', () => {
    const request = {
      method: 'POST',
      url: 'https://api.test/v2/items?tag=b&tag=a&name=J%C3%BCrgen%20%2B%20co&empty=',
      body: 'tag=c&note=50%25+off&tag=a',
    };
    const params = headerParams(
      oauth1Authorization(request, credentials, { now: 1_700_000_000_000 }),
    );
    const url = new URL(request.url);
    const pairs: [string, string][] = [
      ...url.searchParams,
      ...new URLSearchParams(request.body),
      ...[...params].filter(([name]) => name !== 'oauth_signature'),
    ];
    expect(oauth1Signature('POST', 'https://api.test/v2/items', pairs, 'cs', 'ts')).toBe(
      params.get('oauth_signature'),
    );
  });

  it('refuses requests it cannot sign faithfully, without echoing them', () => {
    const refuse = (request: { method: string; url: string; body?: string }) => {
      try {
        oauth1Authorization(request, credentials, { now: 0 });
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidRequestError);
        expect((error as Error).message).not.toContain('s3cr3t');
        return (error as Error).message;
      }
      throw new Error('signed');
    };
    expect(refuse({ method: 'GET', url: 'not a url s3cr3t' })).toMatch(/sign\.url/);
    expect(refuse({ method: 'GET', url: 'ftp://host/s3cr3t' })).toMatch(/sign\.url/);
    expect(refuse({ method: 'GET', url: 'https://u:s3cr3t@host/' })).toMatch(/user information/);
    expect(refuse({ method: 'G T', url: 'https://host/' })).toMatch(/sign\.method/);
    expect(refuse({ method: 'GET', url: 'https://host/?oauth_token=s3cr3t' })).toMatch(/oauth_\*/);
    expect(refuse({ method: 'POST', url: 'https://host/', body: 'oauth_verifier=s3cr3t' })).toMatch(
      /oauth_\*/,
    );
    expect(refuse({ method: 'GET', url: 'https://host/?__proto__=s3cr3t' })).toMatch(
      /cannot be signed/,
    );
  });

  it('reads form-encoded credentials, the first of a repeated field', () => {
    expect(readOAuthForm('oauth_token=a%2Bb&oauth_token_secret=c+d&oauth_token=x\n')).toEqual({
      oauth_token: 'a+b',
      oauth_token_secret: 'c d',
    });
  });
});
