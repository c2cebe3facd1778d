// mpim web chat: the client protocol (docs/protocol.md) over the gateway's
// WebSocket with the JSON subprotocol. Every user-provided text is put in
// the page with textContent, never as markup.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const S = {
    ws: null, nextId: 1, pending: new Map(), authed: false, me: null,
    convs: new Map(),        // conversationId -> summary
    msgs: new Map(),         // conversationId -> Map(seq -> message)
    hasMore: new Map(),      // conversationId -> bool (older history exists)
    seen: new Set(),         // event ids already applied
    names: new Map(),        // userId -> display name
    current: null,           // open conversation id
    typingTimers: new Map(), lastTyping: 0, stopTimer: null, heartbeat: null, retry: 500,
  };

  // ---- errors and status ----
  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = false;
    clearTimeout(showError.t);
    showError.t = setTimeout(() => { e.hidden = true; }, 8000);
  }
  function errText(err) {
    return err && err.code ? err.code + ': ' + (err.message || '') : String(err && err.message || err);
  }
  function status(s) { $('status').textContent = s; }

  // ---- connection ----
  function wsURL() { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'; }

  function connect() {
    status('connecting…');
    const ws = new WebSocket(wsURL(), 'mpim.v1.json');
    S.ws = ws;
    ws.onopen = () => { S.retry = 500; status('connected'); onOpen(); };
    ws.onmessage = (ev) => { let f; try { f = JSON.parse(ev.data); } catch (e) { return; } onFrame(f); };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.authed = false;
      clearInterval(S.heartbeat);
      for (const p of S.pending.values()) p.reject({ code: 'unavailable', message: 'connection closed' });
      S.pending.clear();
      status('disconnected' + (ev.reason ? ' (' + ev.reason + ')' : '') + '; reconnecting…');
      setTimeout(connect, S.retry);
      S.retry = Math.min(S.retry * 2, 10000);
    };
  }

  function call(name, body) {
    return new Promise((resolve, reject) => {
      if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { reject({ code: 'unavailable', message: 'not connected' }); return; }
      const id = S.nextId++;
      S.pending.set(String(id), { name, resolve, reject });
      S.ws.send(JSON.stringify({ id: String(id), [name]: body || {} }));
    });
  }
  // try_ runs call and shows its error, resolving to undefined on failure.
  function tryCall(name, body) { return call(name, body).catch((e) => { showError(errText(e)); return undefined; }); }

  function onFrame(f) {
    if (f.response) {
      const r = f.response, id = String(r.id || '0'), p = S.pending.get(id);
      if (!p) { if (r.error) showError(errText(r.error)); return; }
      S.pending.delete(id);
      if (r.error) p.reject(r.error); else p.resolve(r[p.name] || {});
    } else if (f.push) {
      onPush(f.push);
    } else if (f.signal) {
      onSignal(f.signal);
    } else if (f.syncRequired) {
      loadConversations();
    } else if (f.goaway) {
      status('server going away; reconnecting…');
    }
  }

  async function onOpen() {
    const token = sessionStorage.getItem('mpim.token');
    if (!token) { showAuth(); return; }
    try {
      const r = await call('resume', { token });
      startSession(r);
    } catch (e) {
      sessionStorage.removeItem('mpim.token');
      if (e.code !== 'unavailable') showError('session expired: ' + errText(e));
      showAuth();
    }
  }

  function deviceId() {
    let d = sessionStorage.getItem('mpim.device');
    if (!d) {
      const b = new Uint8Array(8); crypto.getRandomValues(b);
      d = 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
      sessionStorage.setItem('mpim.device', d);
    }
    return d;
  }

  function showAuth() { $('auth').hidden = false; $('main').hidden = true; }

  async function login(username, password) {
    const r = await call('login', { username, password, deviceId: deviceId(), platform: 'web' });
    sessionStorage.setItem('mpim.token', r.token);
    startSession(r);
  }

  function startSession(r) {
    S.authed = true;
    S.me = r.userId;
    if (r.profile) S.names.set(r.userId, r.profile.displayName || r.profile.username);
    $('me-name').textContent = (r.profile && (r.profile.displayName || r.profile.username)) || r.userId;
    $('auth').hidden = true; $('main').hidden = false;
    clearInterval(S.heartbeat);
    S.heartbeat = setInterval(() => { call('ping', {}).catch(() => {}); }, Math.max(5000, (r.heartbeatMs || 30000) / 2));
    loadConversations(); loadFriends(); loadGroups();
    if (S.current) loadHistory(S.current, true);
  }

  // ---- names ----
  async function nameOf(userId) {
    if (!userId) return '';
    if (S.names.has(userId)) return S.names.get(userId);
    try {
      const p = await call('getProfile', { userId });
      S.names.set(userId, p.displayName || p.username);
    } catch (e) { S.names.set(userId, userId); }
    return S.names.get(userId);
  }

  // ---- conversations ----
  async function loadConversations() {
    try {
      const r = await call('conversations', { limit: 100 });
      for (const c of r.conversations || []) {
        const old = S.convs.get(c.conversationId) || {};
        S.convs.set(c.conversationId, Object.assign(old, c));
        if (c.conversationId === S.current) S.convs.get(c.conversationId).unreadCount = '0';
      }
      renderConvs();
    } catch (e) { showError(errText(e)); }
  }
  let refreshT = null;
  function refreshSoon() { clearTimeout(refreshT); refreshT = setTimeout(loadConversations, 300); }

  function renderConvs() {
    const ul = $('convs');
    ul.replaceChildren();
    const list = Array.from(S.convs.values()).sort((a, b) => Number(b.lastMessageAtMs || 0) - Number(a.lastMessageAtMs || 0));
    for (const c of list) {
      const li = document.createElement('li');
      li.dataset.conv = c.conversationId;
      if (c.conversationId === S.current) li.className = 'active';
      const left = document.createElement('div');
      const t = document.createElement('div'); t.className = 'title'; t.textContent = c.title || c.conversationId;
      const pv = document.createElement('div'); pv.className = 'preview'; pv.textContent = c.lastPreview || '';
      left.append(t, pv);
      li.append(left);
      const n = Number(c.unreadCount || 0);
      if (n > 0) { const b = document.createElement('span'); b.className = 'badge'; b.textContent = String(n); li.append(b); }
      li.onclick = () => openConversation(c.conversationId, c.title);
      ul.append(li);
    }
  }

  function directId(a, b) {
    const x = a.replace(/^u\//, ''), y = b.replace(/^u\//, '');
    return 'd/' + (x < y ? x + '.' + y : y + '.' + x);
  }

  async function openConversation(id, title) {
    S.current = id;
    if (!S.convs.has(id)) S.convs.set(id, { conversationId: id, title: title || id });
    const c = S.convs.get(id);
    if (title && !c.title) c.title = title;
    $('conv-title').textContent = c.title || title || id;
    $('receipt').textContent = '';
    $('typing').textContent = '';
    $('msg-input').disabled = false; $('send-btn').disabled = false;
    renderConvs();
    S.msgs.set(id, new Map());
    renderMessages(false);
    await loadHistory(id, true);
    $('msg-input').focus();
  }

  async function loadHistory(id, newest) {
    const m = S.msgs.get(id) || new Map();
    S.msgs.set(id, m);
    let fromSeq = 0;
    if (!newest && m.size) fromSeq = Math.min(...Array.from(m.keys()));
    try {
      const r = await call('history', { conversationId: id, fromSeq: String(fromSeq), direction: 'HISTORY_DIRECTION_BACKWARD', limit: 30 });
      if (S.current !== id) return;
      for (const msg of r.messages || []) if (!m.has(Number(msg.seq))) m.set(Number(msg.seq), msg);
      if (!newest || !S.hasMore.has(id)) S.hasMore.set(id, !!r.hasMore);
      const box = $('messages'), before = box.scrollHeight - box.scrollTop;
      renderMessages(!newest);
      if (!newest) box.scrollTop = box.scrollHeight - before;
      markRead();
    } catch (e) {
      if (e.code !== 'not_found') showError(errText(e));
    }
  }

  function renderMessages(keepScroll) {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren();
    const m = S.msgs.get(S.current);
    if (!m) return;
    for (const seq of Array.from(m.keys()).sort((a, b) => a - b)) box.append(renderMessage(m.get(seq)));
    if (!keepScroll && (atBottom || true)) box.scrollTop = box.scrollHeight;
  }

  function renderMessage(msg) {
    const div = document.createElement('div');
    const mine = msg.senderId === S.me;
    div.className = 'msg' + (mine ? ' mine' : '') + (msg.recalledAtMs ? ' recalled' : '');
    div.dataset.seq = String(msg.seq);
    const who = document.createElement('span'); who.className = 'sender';
    who.textContent = mine ? 'me' : (S.names.get(msg.senderId) || '…');
    if (!mine && !S.names.has(msg.senderId)) nameOf(msg.senderId).then((n) => { who.textContent = n; });
    const text = document.createElement('span'); text.className = 'text';
    if (msg.recalledAtMs) text.textContent = 'message recalled';
    else if (msg.deleted) text.textContent = 'message deleted';
    else text.textContent = msg.text || (msg.attachment && msg.attachment.url) || '';
    const time = document.createElement('span'); time.className = 'time';
    time.textContent = new Date(Number(msg.sentAtMs || 0)).toLocaleTimeString();
    div.append(who, text, time);
    if (mine && !msg.recalledAtMs && !msg.deleted && Date.now() - Number(msg.sentAtMs || 0) < 120000) {
      const b = document.createElement('button'); b.type = 'button'; b.className = 'recall'; b.textContent = 'recall';
      b.onclick = () => tryCall('recall', { conversationId: S.current, seq: String(msg.seq) });
      div.append(b);
    }
    return div;
  }

  let readSent = new Map();
  function markRead() {
    const id = S.current; if (!id || document.hidden) return;
    const m = S.msgs.get(id); if (!m || !m.size) return;
    const top = Math.max(...Array.from(m.keys()));
    if ((readSent.get(id) || 0) >= top) return;
    readSent.set(id, top);
    const c = S.convs.get(id); if (c) { c.unreadCount = '0'; c.readSeq = String(top); renderConvs(); }
    call('markRead', { conversationId: id, seq: String(top) }).catch((e) => { readSent.delete(id); showError(errText(e)); });
  }
  document.addEventListener('visibilitychange', markRead);

  // ---- pushes ----
  function onPush(p) {
    // Acknowledge first (ack covers everything up to this inbox id), then apply once.
    call('ack', { inboxId: p.inboxId }).catch(() => {});
    const ev = p.event || {};
    if (ev.id) { if (S.seen.has(ev.id)) return; S.seen.add(ev.id); }
    if (ev.messageSent) {
      const ms = ev.messageSent, cid = ms.conversationId, seq = Number(ev.seq);
      const msg = Object.assign({ seq: ev.seq, eventId: ev.id }, ms);
      const c = S.convs.get(cid);
      if (!c) refreshSoon();
      else {
        c.lastSeq = ev.seq; c.lastMessageAtMs = ms.sentAtMs; c.lastPreview = ms.text || '';
        if (cid !== S.current && ms.senderId !== S.me) c.unreadCount = String(Number(c.unreadCount || 0) + 1);
      }
      if (cid === S.current) {
        const m = S.msgs.get(cid); if (m && !m.has(seq)) { m.set(seq, msg); renderMessages(false); }
        clearTypist(cid, ms.senderId);
        markRead();
      }
      renderConvs();
    } else if (ev.messageRecalled || ev.messageEdited) {
      const x = ev.messageRecalled || ev.messageEdited, m = S.msgs.get(ev.aggregate);
      const old = m && m.get(Number(x.seq));
      if (old) {
        if (ev.messageRecalled) { old.recalledAtMs = ev.occurredAtMs; old.text = ''; } else { old.text = x.text; old.editedAtMs = ev.occurredAtMs; }
        if (ev.aggregate === S.current) renderMessages(true);
      }
      refreshSoon();
    } else if (ev.conversationRead) {
      const r = ev.conversationRead;
      if (r.userId === S.me) {
        const c = S.convs.get(r.conversationId);
        if (c && Number(r.seq) >= Number(c.lastSeq || 0)) { c.unreadCount = '0'; renderConvs(); }
      } else if (r.conversationId === S.current) {
        $('receipt').textContent = 'read up to #' + r.seq;
      }
    } else if (/^Friend/.test(p.type)) {
      loadFriends();
    } else if (/Group|Member/.test(p.type)) {
      loadGroups(); refreshSoon();
    }
  }

  // ---- typing ----
  function onSignal(s) {
    if (s.fromUserId === S.me || s.conversationId !== S.current) return;
    if (s.kind === 'typing') {
      const key = s.conversationId + ' ' + s.fromUserId;
      clearTimeout(S.typingTimers.get(key));
      S.typingTimers.set(key, setTimeout(() => clearTypist(s.conversationId, s.fromUserId), 6000));
      nameOf(s.fromUserId).then(renderTyping);
    } else if (s.kind === 'typing_stopped') {
      clearTypist(s.conversationId, s.fromUserId);
    }
  }
  function clearTypist(cid, uid) {
    const key = cid + ' ' + uid;
    clearTimeout(S.typingTimers.get(key)); S.typingTimers.delete(key); renderTyping();
  }
  function renderTyping() {
    const who = [];
    for (const key of S.typingTimers.keys()) {
      const [cid, uid] = key.split(' ');
      if (cid === S.current) who.push(S.names.get(uid) || 'someone');
    }
    $('typing').textContent = who.length ? who.join(', ') + (who.length > 1 ? ' are' : ' is') + ' typing…' : '';
  }
  $('msg-input').addEventListener('input', () => {
    if (!S.current || !S.authed) return;
    const now = Date.now();
    if (now - S.lastTyping > 3000) { S.lastTyping = now; call('typing', { conversationId: S.current }).catch(() => {}); }
    clearTimeout(S.stopTimer);
    const cid = S.current;
    S.stopTimer = setTimeout(() => { S.lastTyping = 0; call('typing', { conversationId: cid, stopped: true }).catch(() => {}); }, 4000);
  });

  // ---- friends and groups ----
  async function loadFriends() {
    const [f, r] = await Promise.all([tryCall('listFriends', {}), tryCall('listFriendRequests', {})]);
    if (f) {
      const ul = $('friends'); ul.replaceChildren();
      for (const p of f.friends || []) {
        S.names.set(p.userId, p.displayName || p.username);
        const li = document.createElement('li'); li.textContent = p.displayName || p.username;
        li.onclick = () => openConversation(directId(S.me, p.userId), p.displayName || p.username);
        ul.append(li);
      }
    }
    if (r) {
      const ul = $('requests'); ul.replaceChildren();
      for (const q of r.incoming || []) {
        const li = document.createElement('li');
        const name = (q.user && (q.user.displayName || q.user.username)) || q.fromUserId;
        const s = document.createElement('span'); s.textContent = name + ' wants to be friends';
        const b = document.createElement('button'); b.type = 'button'; b.className = 'accept'; b.textContent = 'accept';
        b.onclick = async () => { if (await tryCall('acceptFriend', { userId: q.fromUserId })) loadFriends(); };
        li.append(s, b); ul.append(li);
      }
      for (const q of r.outgoing || []) {
        const li = document.createElement('li');
        li.textContent = 'asked ' + ((q.user && (q.user.displayName || q.user.username)) || q.toUserId);
        ul.append(li);
      }
    }
  }

  async function loadGroups() {
    const r = await tryCall('myGroups', {});
    if (!r) return;
    const ul = $('groups'); ul.replaceChildren();
    for (const g of r.groups || []) {
      if (g.dissolved) continue;
      const li = document.createElement('li'); li.textContent = g.name;
      li.onclick = () => openConversation(g.conversationId, g.name);
      ul.append(li);
    }
  }

  // ---- forms ----
  function creds() { return [$('auth-user').value.trim(), $('auth-pass').value]; }
  $('auth-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const [u, p] = creds();
    try { await login(u, p); } catch (err) { showError(errText(err)); }
  });
  $('register-btn').addEventListener('click', async () => {
    const [u, p] = creds();
    if (!u || !p) { showError('username and password are required'); return; }
    try {
      await call('register', { username: u, password: p, displayName: u });
      await login(u, p);
    } catch (err) { showError(errText(err)); }
  });
  $('logout-btn').addEventListener('click', async () => {
    await tryCall('logout', {});
    sessionStorage.removeItem('mpim.token');
    S.authed = false; S.current = null; S.convs.clear(); S.msgs.clear();
    clearInterval(S.heartbeat);
    showAuth();
  });
  $('open-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('open-user').value.trim();
    if (!name) return;
    const p = await tryCall('findUser', { username: name });
    if (!p) return;
    S.names.set(p.userId, p.displayName || p.username);
    $('open-user').value = '';
    openConversation(directId(S.me, p.userId), p.displayName || p.username);
  });
  $('friend-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('friend-user').value.trim();
    const p = name && await tryCall('findUser', { username: name });
    if (!p) return;
    if (await tryCall('requestFriend', { userId: p.userId })) { $('friend-user').value = ''; loadFriends(); }
  });
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('group-name').value.trim();
    if (!name) return;
    const ids = [];
    for (const u of $('group-members').value.split(',').map((s) => s.trim()).filter(Boolean)) {
      const p = await tryCall('findUser', { username: u });
      if (!p) return;
      ids.push(p.userId);
    }
    const r = await tryCall('createGroup', { name, memberIds: ids });
    if (!r) return;
    $('group-name').value = ''; $('group-members').value = '';
    loadGroups();
    openConversation(r.conversationId, name);
  });
  $('composer').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('msg-input'), text = input.value;
    if (!S.current) return;
    if (!text.trim()) { showError('message is empty'); return; }
    if (new TextEncoder().encode(text).length > 16384) { showError('message is too long (16 KiB at most)'); return; }
    const cid = S.current;
    const b = new Uint8Array(12); crypto.getRandomValues(b);
    const clientMsgId = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    const body = { clientMsgId, kind: 'MESSAGE_KIND_TEXT', text };
    if (cid.startsWith('d/')) {
      const me = S.me.replace(/^u\//, ''), parts = cid.slice(2).split('.');
      body.userId = 'u/' + (parts[0] === me ? parts[1] : parts[0]);
    } else body.conversationId = cid;
    try {
      const r = await call('send', body);
      input.value = '';
      clearTimeout(S.stopTimer); S.lastTyping = 0;
      if (r.conversationId !== cid) return;
      const m = S.msgs.get(cid), seq = Number(r.seq);
      if (m && !m.has(seq)) {
        m.set(seq, { seq: r.seq, eventId: r.eventId, senderId: S.me, text, sentAtMs: r.sentAtMs, clientMsgId });
        if (r.eventId) S.seen.add(r.eventId);
        if (S.current === cid) renderMessages(false);
      }
    } catch (err) { showError(errText(err)); }
  });
  $('messages').addEventListener('scroll', () => {
    const box = $('messages');
    if (box.scrollTop < 20 && S.current && S.hasMore.get(S.current) && !loadHistory.busy) {
      loadHistory.busy = true;
      S.hasMore.set(S.current, false);
      loadHistory(S.current, false).finally(() => { loadHistory.busy = false; });
    }
  });

  connect();
})();
