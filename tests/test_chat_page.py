"""The chat page at `/`: served with a policy that lets only its own script run,
and used by a person's browser (headless Chromium driven by Selenium): send a
message, read the reply, the ranked candidates with their scores, why one was
dropped, and a research transcript with its citation."""

import base64
import contextlib
import fcntl
import hashlib
import html.parser
import os
import shutil
import subprocess
import threading

import pytest
from werkzeug.test import Client

from lamda_jax.config import ServeConfig
from lamda_jax.serving import ranking, server

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
DEBIAN_PACKAGES = ('chromium', 'chromium-driver')


class _Inline(html.parser.HTMLParser):
  """The text of the page's <script> and <style> elements."""

  def __init__(self):
    super().__init__()
    self.found, self._open = {}, None

  def handle_starttag(self, tag, attrs):
    self._open = tag if tag in ('script', 'style') else None

  def handle_endtag(self, tag):
    self._open = None

  def handle_data(self, data):
    if self._open:
      self.found[self._open] = self.found.get(self._open, '') + data


def _sha256(text: str) -> str:
  return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_served_with_a_policy_that_admits_only_its_own_script():
  client = Client(server.make_app(lambda dialogs, seeds: [], ServeConfig()))
  response = client.get('/')
  assert response.status_code == 200 and response.mimetype == 'text/html'
  inline = _Inline()
  inline.feed(response.get_data(as_text=True))
  policy = dict(part.strip().split(' ', 1)
                for part in response.headers['Content-Security-Policy'].split(';'))
  assert policy['script-src'] == _sha256(inline.found['script'])
  assert policy['style-src'] == _sha256(inline.found['style'])
  assert policy['default-src'] == "'none'" and policy['connect-src'] == "'self'"
  assert response.headers['X-Content-Type-Options'] == 'nosniff'
  assert 'innerHTML' not in inline.found['script']  # model text is set as text only
  assert client.post('/').status_code == 405


class _Researched:
  """A research-loop answer as the server sends it: a Decision plus the
  draft, transcript and citation (grounding.researcher.Grounded's fields)."""

  def __init__(self, decision, transcript, citation):
    self.decision, self.transcript, self.citation = decision, transcript, citation
    self.reply = transcript[-1]['text'].removeprefix('User, ')

  def to_json(self):
    return {**self.decision.to_json(), 'reply': self.reply, 'draft': self.decision.reply,
            'transcript': self.transcript, 'citation': self.citation}


def _answer(dialogs, seeds=None):
  """Three candidates with hand-set scores: the second is unsafe and dropped;
  a dialog that asks about Paris is answered through a research transcript."""
  answers = []
  for turns in dialogs:
    decision = ranking.decide(
        ['a <b>bold</b> plan', 'a rude one', f'{len(turns)} turns so far'], [-3.0, -2.0, -4.0],
        [4, 3, 4], [True, True, True],
        [[0.9, 0.6, 0.2, 0.1], [0.8, 0.5, 0.5, 0.9], [0.7, 0.4, 0.1, 0.2]], 'lamda', 0.8,
        'fallback')
    if turns and 'Paris' in turns[-1].text:
      decision = _Researched(decision, [
          {'speaker': 'LAMDA-RESEARCH', 'text': 'TS, capital of France'},
          {'speaker': 'TS', 'text': 'Paris is the capital of France. https://example.org/paris'},
          {'speaker': 'LAMDA-RESEARCH', 'text': 'User, Paris is the capital of France.'}],
          'https://example.org/paris')
    answers.append(decision)
  return answers


@contextlib.contextmanager
def _exclusive(path: str):
  """One installer at a time, across pytest workers."""
  with open(path, 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


def _browser_present() -> bool:
  return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def _install_browser() -> str:
  """'' when Chromium and its driver are there (installed from Debian's
  packages here when root and apt-get can), else why not."""
  if _browser_present():
    return ''
  if os.geteuid() != 0 or not shutil.which('apt-get'):
    return f'needs Debian packages {", ".join(DEBIAN_PACKAGES)} (not root, or no apt-get)'
  install = ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', *DEBIAN_PACKAGES]
  environment = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
  with _exclusive('/tmp/lamda_jax-browser-install.lock'):
    for commands in ([install], [['apt-get', 'update', '-qq'], install]):  # stale lists: update
      for command in commands if not _browser_present() else ():
        subprocess.run(command, env=environment, capture_output=True, timeout=900, check=False)
  return '' if _browser_present() else f'apt-get could not install {", ".join(DEBIAN_PACKAGES)}'


@pytest.fixture
def browser():
  missing = _install_browser()
  if missing:
    pytest.skip(f'no headless browser: {missing}')
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'):
    options.add_argument(argument)
  driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
  driver.set_page_load_timeout(30)
  yield driver
  driver.quit()


@pytest.mark.slow
def test_a_person_chats_in_a_real_browser_and_sees_the_ranking(browser):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel

  http, _ = server.create_server(_answer, ServeConfig(port=0))
  threading.Thread(target=http.run, daemon=True).start()
  try:
    browser.get(f'http://127.0.0.1:{http.effective_port}/')
    wait = WebDriverWait(browser, 30)

    def say(text, replies):
      browser.find_element(By.ID, 'message').send_keys(text)
      browser.find_element(By.ID, 'send').click()
      wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, '#log p.model')) == replies)

    say('hello there', 1)
    log = [p.text for p in browser.find_elements(By.CSS_SELECTOR, '#log p')]
    assert log == ['You: hello there', 'LaMDA: a <b>bold</b> plan']  # shown as text, not markup
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, 'td')]
            for row in browser.find_elements(By.CSS_SELECTOR, '#candidates tr')]
    # Ranked by 3 S + Sp + I, the unsafe one last with its reason.
    assert [row[1] for row in rows] == ['a <b>bold</b> plan', '1 turns so far', 'a rude one']
    assert rows[0][2:7] == ['0.900', '0.600', '0.200', '0.100', '3.500']
    assert rows[2][7].startswith('unsafe: P(UNSAFE=0) 0.100 < 0.8')
    assert not browser.find_element(By.ID, 'research').is_displayed()

    say('and the capital of France? Paris?', 2)  # the dialog so far goes with it
    rows = browser.find_elements(By.CSS_SELECTOR, '#candidates tr')
    assert rows[1].find_elements(By.TAG_NAME, 'td')[1].text == '3 turns so far'
    assert browser.find_element(By.ID, 'research').is_displayed()
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, '#transcript li')][0] == \
        'LAMDA-RESEARCH: TS, capital of France'
    citation = browser.find_element(By.ID, 'citation')
    assert citation.get_attribute('href') == 'https://example.org/paris'
    assert browser.find_elements(By.CSS_SELECTOR, '#log p')[-1].text == \
        'LaMDA: Paris is the capital of France.'
  finally:
    http.close()
