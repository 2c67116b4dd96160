import { parseJsonBody } from '../../../src/api/exchange.js';
import { statusFor } from '../../../src/api/protocol.js';
import { HyperError } from '../../../src/errors.js';

/** What JSON.parse itself says about text, which the 400 passes on. */
function parserMessage(text: string): string {
  try {
    JSON.parse(text);
  } catch (error: unknown) {
    return (error as Error).message;
  }
  throw new Error(`${text} parsed`);
}

describe('parseJsonBody', () => {
  test.each([
    ['{"Image":"redis:7"}', { Image: 'redis:7' }],
    ['  {"a":[1,2]}\n', { a: [1, 2] }],
    ['[]', []],
    ['null', null],
    ['"text"', 'text'],
    ['{"Name":"\u00e9t\u00e9"}', { Name: '\u00e9t\u00e9' }],
  ])('%j', (text, value) => {
    expect(parseJsonBody(Buffer.from(text))).toEqual(value);
  });

  test('no body, or only whitespace, is undefined', () => {
    expect(parseJsonBody(Buffer.alloc(0))).toBeUndefined();
    expect(parseJsonBody(Buffer.from(' \r\n\t'))).toBeUndefined();
  });

  function refusal(text: string): HyperError {
    try {
      parseJsonBody(Buffer.from(text));
    } catch (error: unknown) {
      if (error instanceof HyperError) return error;
      throw error;
    }
    throw new Error(`${text} parsed`);
  }

  test.each(["{'Image':'redis'}", '{"a":1} trailing'])('%s is a 400 that says where', (text) => {
    const error = refusal(text);
    expect(error.message).toBe(`malformed JSON in the request body: ${parserMessage(text)}`);
    expect(error.message).toMatch(/position \d+/);
    expect(statusFor(error)).toBe(400);
  });

  test('a body cut short is a 400 that says so', () => {
    const error = refusal('{"Image":');
    expect(error.message).toBe('malformed JSON in the request body: Unexpected end of JSON input');
    expect(statusFor(error)).toBe(400);
  });
});
