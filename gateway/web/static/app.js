// mpim web chat: the client protocol (docs/protocol.md) over the gateway's
// WebSocket with the JSON subprotocol. Every user-provided text is put in
// the page with textContent, never as markup; there is no inline script or
// handler (the page's Content-Security-Policy forbids them).
//
// Each tab is a device of its own (its device id and token live in
// sessionStorage), so two tabs of one user are two devices that the server
// keeps in sync with pushes.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = 30;              // history page size
  const MAX_TEXT = 16384;       // bytes of text the server accepts (too_large beyond)
  const RECALL_MS = 120000;     // the sender may recall within 2 minutes
  const EDIT_MS = 86400000;     // and edit within 24 hours
  const OVERLAY_MS = 30000;     // how long pushed changes are laid over (possibly lagging) lists
  const S = {
    ws: null, nextId: 1, pending: new Map(), authed: false, me: null,
    convs: new Map(),        // conversationId -> summary (as the server's ConversationSummary)
    msgs: new Map(),         // conversationId -> Map(seq -> message)
    seen: new Set(),         // event ids already applied (pushes may come twice)
    names: new Map(),        // userId -> display name
    nameReq: new Map(),      // userId -> pending getProfile promise
    peerRead: new Map(),     // conversationId -> the peer's read seq (direct conversations)
    friends: new Map(), incoming: new Map(), outgoing: new Map(), // userId -> profile / request
    groups: new Map(),       // groupId -> {groupId, conversationId, name}
    members: new Map(),      // groupId -> Map(userId -> name)
    recent: [],              // [{at, ev}] friend and group events, re-applied over reloaded lists
    outbox: [],              // messages being sent: {cid, body, text, state}
    current: null,           // open conversation id
    typingTimers: new Map(), lastTyping: 0, stopTimer: null, heartbeat: null,
    retry: 500, goaway: null, ackWant: '', acked: '', ackTimer: null,
    blocked: new Map(),      // userId -> name: users I block
    editing: null,           // {cid, seq} while the composer edits a message
  };

  // ---- errors and status ----
  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = false;
    clearTimeout(showError.t);
    showError.t = setTimeout(() => { e.hidden = true; }, 8000);
  }
  function clearError() { $('error').hidden = true; }
  function notice(msg) { const n = $('notice'); n.textContent = msg; n.hidden = !msg; }
  function errText(err) {
    return err && err.code ? err.code + ': ' + (err.message || '') : String((err && err.message) || err);
  }
  function status(s) { $('status').textContent = s; }
  const num = (x) => Number(x || 0);
  const later = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---- connection ----
  function wsURL() { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'; }

  // The connection is kept up while there is a session (a token) to resume;
  // without one it is opened for logging in or registering (the server
  // closes a connection that does not log in within 15 s).
  let openWaiters = [];
  function connect() {
    status('connecting…');
    const ws = new WebSocket(wsURL(), 'mpim.v1.json');
    S.ws = ws;
    ws.onopen = () => {
      status('connected');
      for (const w of openWaiters) w.resolve();
      openWaiters = [];
      onOpen(ws);
    };
    ws.onmessage = (ev) => { let f; try { f = JSON.parse(ev.data); } catch (e) { return; } onFrame(f); };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.authed = false;
      clearInterval(S.heartbeat);
      clearTimeout(S.ackTimer); S.ackTimer = null; S.ackWant = ''; S.acked = '';
      // Calls in flight fail with the close's meaning: their error handlers
      // run after this one, and must not replace a logout's reason.
      const closed = ev.code === 4003
        ? { code: 'logged_out', message: ev.reason || 'logged out from another device; log in again' }
        : { code: 'unavailable', message: 'connection closed' };
      for (const p of S.pending.values()) p.reject(closed);
      S.pending.clear();
      for (const w of openWaiters) w.reject({ code: 'unavailable', message: 'cannot connect to the server' });
      openWaiters = [];
      if (!sessionStorage.getItem('mpim.token')) { status(''); S.goaway = null; return; }
      if (ev.code === 4001) { // this device connected again elsewhere: do not fight over it
        status('this window was replaced by a newer connection of the same device; reload to continue here');
        return;
      }
      if (ev.code === 4003) { // logged out from another device: the token is revoked
        sessionStorage.removeItem('mpim.token');
        S.goaway = null;
        status('');
        resetState();
        showAuth();
        showError(ev.reason || 'logged out from another device; log in again');
        return;
      }
      let wait = S.retry;
      if (S.goaway) { wait = Math.max(num(S.goaway.reconnectAfterMs), 100); S.goaway = null; } else S.retry = Math.min(S.retry * 2, 10000);
      status('disconnected' + (ev.reason ? ' (' + ev.reason + ')' : '') + '; reconnecting…');
      setTimeout(() => { if (!S.ws) connect(); }, wait);
    };
  }
  function ensureOpen() {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      openWaiters.push({ resolve, reject });
      if (!S.ws) connect();
    });
  }

  function call(name, body) {
    return new Promise((resolve, reject) => {
      if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { reject({ code: 'unavailable', message: 'not connected' }); return; }
      const id = String(S.nextId++);
      S.pending.set(id, { name, resolve, reject });
      S.ws.send(JSON.stringify({ id, [name]: body || {} }));
    });
  }
  // tryCall runs call and shows its error, resolving to undefined on failure.
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
      // Pushes older than what the server keeps are gone: catch up from the
      // read models.
      loadConversations();
      if (S.current) catchUp(S.current);
    } else if (f.goaway) {
      // The gateway is shutting down: finish (acks), close, come back later.
      S.goaway = f.goaway;
      status('server going away; reconnecting…');
      flushAck();
      const ws = S.ws;
      setTimeout(() => { if (ws && S.ws === ws) ws.close(1000, 'goaway'); }, 200);
    }
  }

  async function onOpen(ws) {
    const token = sessionStorage.getItem('mpim.token');
    if (!token) { S.retry = 500; showAuth(); return; }
    try {
      const r = await call('resume', { token });
      S.retry = 500;
      startSession(r);
    } catch (e) {
      if (e.code === 'unauthenticated') {
        // The token is no good any more: log in again.
        S.retry = 500;
        sessionStorage.removeItem('mpim.token');
        showError('session expired: ' + errText(e));
        resetState();
        showAuth();
      } else if (S.ws === ws) {
        // A passing failure (unavailable, rate_limited): try again later.
        ws.close(1000, 'resume failed');
      }
    }
  }

  // ---- devices: one per tab ----
  // claimDevice holds a lock named after the device for the tab's life, so
  // a duplicated tab (which copies sessionStorage) notices it would share
  // the device, and with it the delivery, of the original tab.
  function claimDevice(d) {
    if (!navigator.locks) return Promise.resolve(true);
    return new Promise((resolve) => {
      navigator.locks.request('mpim-device-' + d, { ifAvailable: true }, (lock) => {
        resolve(!!lock);
        return lock ? new Promise(() => {}) : undefined;
      }).catch(() => resolve(true));
    });
  }
  function deviceId() {
    let d = sessionStorage.getItem('mpim.device');
    if (!d) {
      const b = new Uint8Array(8); crypto.getRandomValues(b);
      d = 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
      sessionStorage.setItem('mpim.device', d);
      claimDevice(d);
    }
    return d;
  }

  function showAuth() { $('auth').hidden = false; $('main').hidden = true; }

  async function login(username, password) {
    await ensureOpen();
    const r = await call('login', { username, password, deviceId: deviceId(), platform: 'web' });
    sessionStorage.setItem('mpim.token', r.token);
    sessionStorage.setItem('mpim.user', username);
    startSession(r);
  }

  function startSession(r) {
    if (S.me && S.me !== r.userId) resetState();
    S.authed = true;
    S.me = r.userId;
    notice('');
    clearError();
    const p = r.profile || {};
    S.names.set(r.userId, p.displayName || p.username || r.userId);
    $('me-name').textContent = p.displayName || p.username || r.userId;
    $('auth').hidden = true; $('main').hidden = false;
    clearInterval(S.heartbeat);
    S.heartbeat = setInterval(() => { call('ping', {}).catch(() => {}); }, Math.max(5000, num(r.heartbeatMs || 30000) / 2));
    loadConversations(); loadFriends(); loadGroups();
    document.dispatchEvent(new CustomEvent('mpim:session'));
    if (S.current) { catchUp(S.current); loadMembers(); }
    flushOutbox();
  }

  function resetState() {
    S.authed = false; S.me = null; S.current = null;
    for (const m of [S.convs, S.msgs, S.peerRead, S.friends, S.incoming, S.outgoing, S.blocked, S.groups, S.members, S.typingTimers]) m.clear();
    endEdit();
    S.recent = []; S.outbox = []; readSent.clear(); convItems.clear();
    clearInterval(S.heartbeat);
    for (const id of ['convs', 'friends', 'requests', 'blocked', 'groups', 'msg-list']) $(id).replaceChildren();
    for (const id of ['me-name', 'receipt', 'typing', 'members']) $(id).textContent = '';
    $('conv-title').textContent = 'No conversation open';
    $('group-bar').hidden = true; $('load-older').hidden = true;
    $('msg-input').disabled = true; $('send-btn').disabled = true;
    document.title = 'mpim chat';
    document.dispatchEvent(new CustomEvent('mpim:reset'));
  }

  // ---- names ----
  function nameOf(userId) {
    if (!userId) return Promise.resolve('');
    if (S.names.has(userId)) return Promise.resolve(S.names.get(userId));
    if (!S.nameReq.has(userId)) {
      S.nameReq.set(userId, call('getProfile', { userId }).then((p) => {
        S.names.set(userId, p.displayName || p.username || userId);
        return S.names.get(userId);
      }, () => userId).finally(() => S.nameReq.delete(userId)));
    }
    return S.nameReq.get(userId);
  }

  // ---- conversations ----
  function groupOfConv(cid) {
    for (const g of S.groups.values()) if (g.conversationId === cid) return g;
    return null;
  }
  function directPeer(cid) {
    if (!cid.startsWith('d/') || !S.me) return '';
    const me = S.me.replace(/^u\//, ''), parts = cid.slice(2).split('.');
    return 'u/' + (parts[0] === me ? parts[1] : parts[0]);
  }
  function directId(a, b) {
    const x = a.replace(/^u\//, ''), y = b.replace(/^u\//, '');
    return 'd/' + (x < y ? x + '.' + y : y + '.' + x);
  }
  // conv returns the summary of a conversation, making a local one (filled
  // in by the next list from the server) for a conversation not listed yet.
  function conv(cid, title) {
    let c = S.convs.get(cid);
    if (!c) {
      c = { conversationId: cid, title: title || '', lastSeq: '0', readSeq: '0', unreadCount: '0' };
      if (cid.startsWith('d/')) {
        c.peerUserId = directPeer(cid);
        if (!c.title) nameOf(c.peerUserId).then((n) => { if (!c.title) { c.title = n; renderConvs(); if (cid === S.current) $('conv-title').textContent = n; } });
      } else {
        const g = groupOfConv(cid);
        if (g) { c.groupId = g.groupId; if (!c.title) c.title = g.name; }
      }
      S.convs.set(cid, c);
    }
    if (title && !c.title) c.title = title;
    return c;
  }

  async function loadConversations() {
    let r;
    try { r = await call('conversations', { limit: 200 }); } catch (e) { if (e.code !== 'unavailable') showError(errText(e)); return; }
    for (const s of r.conversations || []) {
      const c = S.convs.get(s.conversationId);
      if (!c || num(s.lastSeq) >= num(c.lastSeq)) {
        // The server knows at least as much: take its counters. Fields at
        // their default value are left out of the JSON, so set them all.
        const n = Object.assign(c || {}, s);
        n.lastSeq = s.lastSeq || '0';
        n.lastPreview = s.lastPreview || '';
        n.unreadCount = s.unreadCount || '0';
        n.readSeq = String(Math.max(num(s.readSeq), num(c && c.readSeq)));
        if (num(n.readSeq) >= num(n.lastSeq)) n.unreadCount = '0';
        S.convs.set(s.conversationId, n);
      } else {
        // Pushes told us more than the (lagging) read model: keep our counters.
        c.title = s.title || c.title; c.peerUserId = s.peerUserId || c.peerUserId; c.groupId = s.groupId || c.groupId;
      }
      if (s.conversationId === S.current) {
        S.convs.get(s.conversationId).unreadCount = '0';
        $('conv-title').textContent = S.convs.get(s.conversationId).title || $('conv-title').textContent;
      }
    }
    renderConvs();
  }
  let refreshT = null;
  function refreshSoon() { clearTimeout(refreshT); refreshT = setTimeout(loadConversations, 500); }

  // renderConvs updates the conversation list in place (an entry keeps its
  // element, so a click is never lost to a redraw).
  const convItems = new Map(); // conversationId -> {li, title, preview, badge}
  function renderConvs() {
    const ul = $('convs');
    const list = Array.from(S.convs.values()).sort((a, b) => num(b.lastMessageAtMs) - num(a.lastMessageAtMs));
    let total = 0;
    list.forEach((c, i) => {
      const cid = c.conversationId;
      let it = convItems.get(cid);
      if (!it) {
        const li = document.createElement('li');
        li.dataset.conv = cid;
        const left = document.createElement('div');
        const t = document.createElement('div'); t.className = 'title';
        const pv = document.createElement('div'); pv.className = 'preview';
        left.append(t, pv);
        li.append(left);
        const badge = document.createElement('span'); badge.className = 'badge';
        li.addEventListener('click', () => { const x = S.convs.get(cid); openConversation(cid, x && x.title); });
        it = { li, t, pv, badge };
        convItems.set(cid, it);
      }
      it.li.className = cid === S.current ? 'active' : '';
      const title = c.title || cid, preview = c.lastPreview || '', n = num(c.unreadCount);
      if (it.t.textContent !== title) it.t.textContent = title;
      if (it.pv.textContent !== preview) it.pv.textContent = preview;
      total += n;
      if (n > 0) {
        if (it.badge.textContent !== String(n)) it.badge.textContent = String(n);
        if (!it.badge.parentNode) it.li.append(it.badge);
      } else if (it.badge.parentNode) it.badge.remove();
      if (ul.children[i] !== it.li) ul.insertBefore(it.li, ul.children[i] || null);
    });
    for (const [cid, it] of convItems) if (!S.convs.has(cid)) { it.li.remove(); convItems.delete(cid); }
    document.title = total > 0 ? '(' + total + ') mpim chat' : 'mpim chat';
  }

  function openConversation(id, title) {
    endEdit();
    if (S.current && S.current !== id && S.lastTyping) { call('typing', { conversationId: S.current, stopped: true }).catch(() => {}); }
    clearTimeout(S.stopTimer); S.lastTyping = 0;
    S.current = id;
    const c = conv(id, title);
    $('conv-title').textContent = c.title || title || id;
    renderTyping();
    $('msg-input').disabled = false; $('send-btn').disabled = false;
    const g = id.startsWith('c/') ? (S.groups.get(c.groupId) || groupOfConv(id)) : null;
    $('group-bar').hidden = !id.startsWith('c/');
    $('members').textContent = '';
    if (g && !c.groupId) c.groupId = g.groupId;
    c.unreadCount = '0';
    renderConvs();
    if (!S.msgs.has(id)) S.msgs.set(id, new Map());
    renderMessages('bottom');
    renderReceipt();
    loadMembers();
    markRead();
    $('msg-input').focus();
    return catchUp(id);
  }

  // ---- messages ----
  function msgMap(cid) {
    let m = S.msgs.get(cid);
    if (!m) { m = new Map(); S.msgs.set(cid, m); }
    return m;
  }
  function seqs(m) { return Array.from(m.keys()).sort((a, b) => a - b); }
  // merge stores a message from history; what pushes told us about it
  // (recalled, edited) is never undone by a lagging read model.
  function merge(m, msg) {
    const seq = num(msg.seq), old = m.get(seq);
    if (!old) { m.set(seq, msg); return; }
    if (msg.recalledAtMs && !old.recalledAtMs) { old.recalledAtMs = msg.recalledAtMs; old.text = ''; }
    if (msg.deleted) old.deleted = true;
    if (msg.editedAtMs && num(msg.editedAtMs) > num(old.editedAtMs)) { old.text = msg.text; old.editedAtMs = msg.editedAtMs; }
  }

  // catchUp brings the conversation up to date: the newest page, then
  // forward from the first gap (messages missed while disconnected).
  const catching = new Map();
  async function catchUp(cid, attempt) {
    if (catching.has(cid)) { catching.set(cid, true); return; }
    catching.set(cid, false);
    try {
      const m = msgMap(cid);
      const r = await call('history', { conversationId: cid, direction: 'HISTORY_DIRECTION_BACKWARD', limit: PAGE });
      for (const msg of r.messages || []) merge(m, msg);
      for (let i = 0; i < 20; i++) {
        const ks = seqs(m);
        let from = -1;
        for (let j = 1; j < ks.length; j++) if (ks[j] !== ks[j - 1] + 1) { from = ks[j - 1]; break; }
        if (from < 0) break;
        const f = await call('history', { conversationId: cid, fromSeq: String(from), direction: 'HISTORY_DIRECTION_FORWARD', limit: 100 });
        const got = f.messages || [];
        for (const msg of got) merge(m, msg);
        if (!got.length) break;
      }
      if (cid === S.current) { renderMessages('keep'); markRead(); }
    } catch (e) {
      if (e.code === 'not_member' && (attempt || 0) < 4 && cid === S.current) {
        // A group we just created or joined: the read model follows in a moment.
        later(500 << (attempt || 0)).then(() => { if (cid === S.current) catchUp(cid, (attempt || 0) + 1); });
      } else if (e.code !== 'unavailable' && e.code !== 'not_found') showError(errText(e));
    } finally {
      const again = catching.get(cid);
      catching.delete(cid);
      if (again) catchUp(cid);
    }
  }

  let loadingOlder = false;
  async function loadOlder() {
    const cid = S.current;
    if (!cid || loadingOlder) return;
    const m = msgMap(cid), ks = seqs(m);
    if (!ks.length || ks[0] <= 1) return;
    loadingOlder = true;
    try {
      const r = await call('history', { conversationId: cid, fromSeq: String(ks[0]), direction: 'HISTORY_DIRECTION_BACKWARD', limit: PAGE });
      for (const msg of r.messages || []) merge(m, msg);
      if (cid === S.current) renderMessages('top');
    } catch (e) {
      showError(errText(e));
    } finally {
      loadingOlder = false;
    }
  }

  // renderMessages redraws the open conversation. where: 'bottom' scrolls
  // to the newest message, 'top' keeps the view on the same messages after
  // older ones were added above, 'keep' stays at the bottom if it was there.
  function renderMessages(where) {
    const box = $('messages'), list = $('msg-list');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const fromBottom = box.scrollHeight - box.scrollTop;
    list.replaceChildren();
    const m = S.msgs.get(S.current);
    $('load-older').hidden = true;
    if (!m) return;
    const ks = seqs(m);
    $('load-older').hidden = !(ks.length && ks[0] > 1);
    for (const seq of ks) list.append(renderMessage(m.get(seq)));
    for (const o of S.outbox) if (o.cid === S.current) list.append(renderPending(o));
    if (where === 'top') box.scrollTop = box.scrollHeight - fromBottom;
    else if (where === 'bottom' || atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderMessage(msg) {
    const div = document.createElement('div');
    const mine = msg.senderId === S.me;
    const read = mine && num(msg.seq) <= num(S.peerRead.get(S.current));
    div.className = 'msg' + (mine ? ' mine' : '') + (msg.recalledAtMs ? ' recalled' : '') + (read ? ' read' : '');
    div.dataset.seq = String(msg.seq);
    const who = document.createElement('span'); who.className = 'sender';
    who.textContent = mine ? 'me' : (S.names.get(msg.senderId) || '…');
    if (!mine && !S.names.has(msg.senderId)) nameOf(msg.senderId).then((n) => { who.textContent = n; });
    const text = document.createElement('span'); text.className = 'text';
    if (msg.recalledAtMs) text.textContent = 'message recalled';
    else if (msg.deleted) text.textContent = 'message deleted';
    else text.textContent = msg.text || (msg.attachment && msg.attachment.url) || '';
    const time = document.createElement('span'); time.className = 'time';
    time.textContent = new Date(num(msg.sentAtMs)).toLocaleTimeString() + (msg.editedAtMs ? ' (edited)' : '');
    div.append(who, text, time);
    if (mine && S.current && S.current.startsWith('d/') && !msg.recalledAtMs) {
      const st = document.createElement('span'); st.className = 'status'; st.textContent = read ? '✓✓ read' : '✓';
      div.append(st);
    }
    if (mine && !msg.recalledAtMs && !msg.deleted && Date.now() - num(msg.sentAtMs) < RECALL_MS) {
      const b = document.createElement('button'); b.type = 'button'; b.className = 'recall'; b.textContent = 'recall';
      const cid = S.current;
      b.addEventListener('click', () => tryCall('recall', { conversationId: cid, seq: String(msg.seq) }));
      div.append(b);
    }
    if (mine && !msg.recalledAtMs && !msg.deleted && msg.kind !== 'MESSAGE_KIND_IMAGE' && Date.now() - num(msg.sentAtMs) < EDIT_MS) {
      const b = document.createElement('button'); b.type = 'button'; b.className = 'edit'; b.textContent = 'edit';
      const cid = S.current;
      b.addEventListener('click', () => startEdit(cid, msg));
      div.append(b);
    }
    return div;
  }

  // Editing reuses the composer: it holds the message's text until saved
  // (Enter or Save) or cancelled (Escape).
  function startEdit(cid, msg) {
    S.editing = { cid, seq: String(msg.seq) };
    const input = $('msg-input');
    input.value = msg.text || '';
    input.focus();
    $('send-btn').textContent = 'Save';
    notice('editing message #' + msg.seq + ': Enter saves, Escape cancels');
  }
  function endEdit() {
    if (!S.editing) return;
    S.editing = null;
    $('msg-input').value = '';
    $('send-btn').textContent = 'Send';
    notice('');
  }

  function renderPending(o) {
    const div = document.createElement('div');
    div.className = 'msg mine pending';
    const who = document.createElement('span'); who.className = 'sender'; who.textContent = 'me';
    const text = document.createElement('span'); text.className = 'text'; text.textContent = o.text;
    const st = document.createElement('span'); st.className = 'status'; st.textContent = 'sending…';
    div.append(who, text, st);
    return div;
  }

  function renderReceipt() {
    const seq = num(S.peerRead.get(S.current));
    $('receipt').textContent = S.current && S.current.startsWith('d/') && seq > 0 ? 'read up to #' + seq : '';
  }

  // markRead tells the server (soon, once for a burst of messages) that the
  // open conversation is read up to its newest message.
  const readSent = new Map();
  let readT = null;
  function markRead() {
    clearTimeout(readT);
    readT = setTimeout(() => {
      const id = S.current; if (!id || document.hidden || !S.authed) return;
      const m = S.msgs.get(id); if (!m || !m.size) return;
      const top = Math.max(...m.keys());
      const c = S.convs.get(id);
      if (c) { c.unreadCount = '0'; c.readSeq = String(Math.max(num(c.readSeq), top)); renderConvs(); }
      if ((readSent.get(id) || 0) >= top) return;
      readSent.set(id, top);
      call('markRead', { conversationId: id, seq: String(top) }).catch((e) => {
        readSent.delete(id);
        if (e.code !== 'unavailable') showError(errText(e));
      });
    }, 100);
  }
  document.addEventListener('visibilitychange', markRead);

  // ---- pushes ----
  // ackSoon acknowledges the latest push shortly: one ack covers every push
  // up to it, so a burst of pushes costs one request.
  function ackSoon(inboxId) {
    S.ackWant = inboxId;
    if (!S.ackTimer) S.ackTimer = setTimeout(flushAck, 100);
  }
  function flushAck() {
    clearTimeout(S.ackTimer); S.ackTimer = null;
    const id = S.ackWant;
    if (!id || id === S.acked) return;
    call('ack', { inboxId: id }).then(() => { S.acked = id; }, () => {});
  }

  function onPush(p) {
    ackSoon(p.inboxId);
    const ev = p.event || {};
    if (ev.id) { if (S.seen.has(ev.id)) return; S.seen.add(ev.id); }
    if (ev.messageSent) onMessage(ev);
    else if (ev.messageRecalled || ev.messageEdited) {
      const x = ev.messageRecalled || ev.messageEdited, cid = ev.aggregate;
      const old = S.msgs.get(cid) && S.msgs.get(cid).get(num(x.seq));
      if (old) {
        if (ev.messageRecalled) { old.recalledAtMs = ev.occurredAtMs; old.text = ''; } else { old.text = x.text; old.editedAtMs = ev.occurredAtMs; }
        if (cid === S.current) renderMessages('keep');
      }
      const c = S.convs.get(cid);
      if (c && ev.messageRecalled && num(c.lastSeq) === num(x.seq)) { c.lastPreview = ''; renderConvs(); }
      refreshSoon();
    } else if (ev.conversationRead) {
      const r = ev.conversationRead, c = S.convs.get(r.conversationId);
      if (r.userId === S.me) {
        // Read on this or another of my devices.
        if (c) {
          c.readSeq = String(Math.max(num(c.readSeq), num(r.seq)));
          if (num(c.readSeq) >= num(c.lastSeq)) c.unreadCount = '0'; else refreshSoon();
          renderConvs();
        }
      } else {
        // The read receipt of the other side of a direct conversation.
        if (num(r.seq) > num(S.peerRead.get(r.conversationId))) S.peerRead.set(r.conversationId, r.seq);
        if (r.conversationId === S.current) { renderReceipt(); renderMessages('keep'); }
      }
    } else if (ev.messageDeletedForMe) {
      const d = ev.messageDeletedForMe, old = S.msgs.get(d.conversationId) && S.msgs.get(d.conversationId).get(num(d.seq));
      if (old) { old.deleted = true; old.text = ''; if (d.conversationId === S.current) renderMessages('keep'); }
    } else if (ev.profileUpdated && ev.aggregate === S.me) {
      S.names.set(S.me, ev.profileUpdated.displayName);
      $('me-name').textContent = ev.profileUpdated.displayName;
    } else if (/^(Friend|User(Un)?[Bb]locked)/.test(p.type)) {
      remember(ev); applyFriendEvent(ev); renderFriends();
    } else if (/^(Group|Member)/.test(p.type)) {
      remember(ev); applyGroupEvent(ev, true); renderGroups();
    }
  }

  function onMessage(ev) {
    const ms = ev.messageSent, cid = ms.conversationId, seq = num(ev.seq);
    const msg = Object.assign({ seq: ev.seq, eventId: ev.id }, ms);
    const m = msgMap(cid), ks = seqs(m);
    const gap = ks.length > 0 && seq > ks[ks.length - 1] + 1;
    if (!m.has(seq)) m.set(seq, msg);
    // A message from this tab's outbox is now sent.
    S.outbox = S.outbox.filter((o) => !(o.cid === cid && o.body.clientMsgId === ms.clientMsgId));
    const c = conv(cid);
    if (seq > num(c.lastSeq)) {
      c.lastSeq = ev.seq; c.lastMessageAtMs = ms.sentAtMs; c.lastSenderId = ms.senderId;
      c.lastPreview = ms.text || (ms.attachment && ms.attachment.url) || '';
      if (cid !== S.current && ms.senderId !== S.me && seq > num(c.readSeq)) c.unreadCount = String(num(c.unreadCount) + 1);
    }
    if (!S.convs.has(cid) || !c.title) refreshSoon();
    if (cid === S.current) {
      if (gap) catchUp(cid);
      renderMessages(ms.senderId === S.me ? 'bottom' : 'keep');
      clearTypist(cid, ms.senderId);
      markRead();
    }
    renderConvs();
  }

  // ---- typing ----
  function onSignal(s) {
    if (s.fromUserId === S.me) return;
    if (s.kind === 'typing') {
      const key = s.conversationId + ' ' + s.fromUserId;
      clearTimeout(S.typingTimers.get(key));
      S.typingTimers.set(key, setTimeout(() => clearTypist(s.conversationId, s.fromUserId), 6000));
      renderTyping();
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
    const now = Date.now(), cid = S.current;
    if (now - S.lastTyping > 3000) { S.lastTyping = now; call('typing', { conversationId: cid }).catch(() => {}); }
    clearTimeout(S.stopTimer);
    S.stopTimer = setTimeout(() => { S.lastTyping = 0; call('typing', { conversationId: cid, stopped: true }).catch(() => {}); }, 4000);
  });

  // ---- friends and groups ----
  // Lists come from read models that may lag a moment behind the pushes:
  // the friend and group events of the last seconds are applied again over
  // every list loaded from the server.
  function remember(ev) {
    const now = Date.now();
    S.recent = S.recent.filter((x) => now - x.at < OVERLAY_MS);
    S.recent.push({ at: now, ev });
  }
  function recentEvents() {
    const now = Date.now();
    return S.recent.filter((x) => now - x.at < OVERLAY_MS).map((x) => x.ev);
  }
  function profileOf(userId) { return { userId, displayName: S.names.get(userId) || '' }; }

  function applyFriendEvent(ev) {
    const me = S.me;
    if (ev.friendRequested) {
      const x = ev.friendRequested;
      if (x.toUserId === me) S.incoming.set(x.fromUserId, { fromUserId: x.fromUserId, toUserId: me, user: profileOf(x.fromUserId) });
      else S.outgoing.set(x.toUserId, { fromUserId: me, toUserId: x.toUserId, user: profileOf(x.toUserId) });
    } else if (ev.friendRequestAccepted || ev.friendRequestDeclined) {
      const x = ev.friendRequestAccepted || ev.friendRequestDeclined;
      const other = x.fromUserId === me ? x.byUserId : x.fromUserId;
      S.incoming.delete(other); S.outgoing.delete(other);
      if (ev.friendRequestAccepted && !S.friends.has(other)) S.friends.set(other, profileOf(other));
    } else if (ev.friendRemoved) {
      const x = ev.friendRemoved;
      S.friends.delete(x.byUserId === me ? x.otherUserId : x.byUserId);
    } else if (ev.userBlocked) {
      const x = ev.userBlocked, other = x.blockerId === me ? x.blockedId : x.blockerId;
      S.friends.delete(other); S.incoming.delete(other); S.outgoing.delete(other);
      if (x.blockerId === me && !S.blocked.has(other)) S.blocked.set(other, S.names.get(other) || '');
    } else if (ev.userUnblocked) {
      const x = ev.userUnblocked;
      if (x.blockerId === me) S.blocked.delete(x.blockedId);
    }
    for (const id of [S.friends, S.incoming, S.outgoing].flatMap((mp) => Array.from(mp.keys()))) {
      if (!S.names.has(id)) nameOf(id).then(renderFriends);
    }
  }

  async function loadFriends() {
    let f, r, b;
    try {
      [f, r, b] = await Promise.all([call('listFriends', {}), call('listFriendRequests', {}), call('listBlocks', {})]);
    } catch (e) { if (e.code !== 'unavailable') showError(errText(e)); return; }
    S.friends.clear(); S.incoming.clear(); S.outgoing.clear(); S.blocked.clear();
    for (const id of b.userIds || []) S.blocked.set(id, S.names.get(id) || '');
    for (const p of f.friends || []) { S.names.set(p.userId, p.displayName || p.username); S.friends.set(p.userId, p); }
    for (const q of r.incoming || []) { if (q.user) S.names.set(q.fromUserId, q.user.displayName || q.user.username); S.incoming.set(q.fromUserId, q); }
    for (const q of r.outgoing || []) { if (q.user) S.names.set(q.toUserId, q.user.displayName || q.user.username); S.outgoing.set(q.toUserId, q); }
    for (const ev of recentEvents()) applyFriendEvent(ev);
    for (const id of S.blocked.keys()) if (!S.names.has(id)) nameOf(id).then((n) => { S.blocked.set(id, n); renderFriends(); });
    renderFriends();
  }

  function renderFriends() {
    const name = (id, p) => (p && (p.displayName || p.username)) || S.names.get(id) || id;
    const fl = $('friends'); fl.replaceChildren();
    for (const [id, p] of S.friends) {
      const li = document.createElement('li'); li.className = 'friend'; li.dataset.user = id;
      const n = document.createElement('span'); n.className = 'name'; n.textContent = name(id, p);
      n.addEventListener('click', () => openConversation(directId(S.me, id), name(id, p)));
      const rm = document.createElement('button'); rm.type = 'button'; rm.className = 'unfriend'; rm.textContent = 'remove';
      rm.addEventListener('click', async () => { if (await tryCall('removeFriend', { userId: id })) { S.friends.delete(id); renderFriends(); } });
      const bl = document.createElement('button'); bl.type = 'button'; bl.className = 'block'; bl.textContent = 'block';
      bl.addEventListener('click', async () => {
        if (await tryCall('block', { userId: id })) { S.blocked.set(id, name(id, p)); S.friends.delete(id); renderFriends(); }
      });
      li.append(n, rm, bl);
      fl.append(li);
    }
    const bll = $('blocked'); bll.replaceChildren();
    for (const [id, n] of S.blocked) {
      const li = document.createElement('li'); li.className = 'blocked'; li.dataset.user = id;
      const s = document.createElement('span'); s.textContent = 'blocked: ' + (n || S.names.get(id) || id);
      const u = document.createElement('button'); u.type = 'button'; u.className = 'unblock'; u.textContent = 'unblock';
      u.addEventListener('click', async () => { if (await tryCall('unblock', { userId: id })) { S.blocked.delete(id); renderFriends(); } });
      li.append(s, u); bll.append(li);
    }
    const rl = $('requests'); rl.replaceChildren();
    for (const [id, q] of S.incoming) {
      const li = document.createElement('li'); li.className = 'incoming'; li.dataset.user = id;
      const s = document.createElement('span'); s.textContent = name(id, q.user) + ' wants to be friends';
      const a = document.createElement('button'); a.type = 'button'; a.className = 'accept'; a.textContent = 'accept';
      a.addEventListener('click', async () => { if (await tryCall('acceptFriend', { userId: id })) { S.incoming.delete(id); S.friends.set(id, profileOf(id)); renderFriends(); } });
      const d = document.createElement('button'); d.type = 'button'; d.className = 'decline'; d.textContent = 'decline';
      d.addEventListener('click', async () => { if (await tryCall('declineFriend', { userId: id })) { S.incoming.delete(id); renderFriends(); } });
      li.append(s, a, d); rl.append(li);
    }
    for (const [id, q] of S.outgoing) {
      const li = document.createElement('li'); li.className = 'outgoing'; li.dataset.user = id;
      li.textContent = 'asked ' + name(id, q.user);
      rl.append(li);
    }
  }

  function applyGroupEvent(ev, live) {
    const gid = ev.aggregate;
    const cid = 'c/' + String(gid).replace(/^g\//, '');
    const me = S.me;
    if (ev.groupCreated) {
      const x = ev.groupCreated;
      S.groups.set(x.groupId, { groupId: x.groupId, conversationId: 'c/' + x.groupId.replace(/^g\//, ''), name: x.name });
    } else if ((ev.memberAdded && ev.memberAdded.userId === me) || (ev.memberJoined && ev.memberJoined.userId === me)) {
      if (!S.groups.has(gid)) {
        S.groups.set(gid, { groupId: gid, conversationId: cid, name: '' });
        if (live) fetchGroup(gid);
      }
    } else if (ev.groupRenamed) {
      const g = S.groups.get(gid); if (g) g.name = ev.groupRenamed.name;
      const c = S.convs.get(cid); if (c) { c.title = ev.groupRenamed.name; renderConvs(); }
    } else if (ev.groupDissolved || (ev.memberLeft && ev.memberLeft.userId === me) || (ev.memberKicked && ev.memberKicked.userId === me)) {
      S.groups.delete(gid);
    }
    const m = S.members.get(gid);
    if (m) {
      const x = ev.memberAdded || ev.memberJoined;
      if (x) { m.set(x.userId, S.names.get(x.userId) || ''); nameOf(x.userId).then((n) => { m.set(x.userId, n); renderMembers(); }); }
      const y = ev.memberLeft || ev.memberKicked;
      if (y) m.delete(y.userId);
      renderMembers();
    }
  }

  // fetchGroup learns a group's name (we were added to it: the event does
  // not carry it), retrying while the read model catches up.
  async function fetchGroup(gid) {
    for (const wait of [0, 500, 1000, 2000, 4000, 8000]) {
      await later(wait);
      try {
        const r = await call('groupMembers', { groupId: gid });
        const g = S.groups.get(gid);
        if (g && r.group) { g.name = r.group.name; g.conversationId = r.group.conversationId || g.conversationId; renderGroups(); }
        return;
      } catch (e) {
        if (e.code === 'unavailable') return;
      }
    }
  }

  async function loadGroups() {
    let r;
    try { r = await call('myGroups', {}); } catch (e) { if (e.code !== 'unavailable') showError(errText(e)); return; }
    S.groups.clear();
    for (const g of r.groups || []) if (!g.dissolved) S.groups.set(g.groupId, g);
    for (const ev of recentEvents()) if (/^g\//.test(ev.aggregate || '')) applyGroupEvent(ev, false);
    for (const g of S.groups.values()) if (!g.name) fetchGroup(g.groupId);
    renderGroups();
  }

  function renderGroups() {
    const ul = $('groups'); ul.replaceChildren();
    for (const g of S.groups.values()) {
      const li = document.createElement('li'); li.className = 'group'; li.dataset.group = g.groupId;
      li.textContent = g.name || '…';
      li.addEventListener('click', () => openConversation(g.conversationId, g.name));
      ul.append(li);
      const c = S.convs.get(g.conversationId);
      if (c) { c.groupId = g.groupId; if (!c.title && g.name) { c.title = g.name; renderConvs(); } }
    }
    const cur = S.current && S.current.startsWith('c/') && groupOfConv(S.current);
    if (cur && cur.name) $('conv-title').textContent = cur.name;
  }

  // loadMembers shows the members of the open group conversation.
  async function loadMembers() {
    const cid = S.current;
    if (!cid || !cid.startsWith('c/')) return;
    const gid = 'g/' + cid.slice(2);
    for (const wait of [0, 500, 1000, 2000, 4000, 8000]) {
      await later(wait);
      if (S.current !== cid) return;
      try {
        const r = await call('groupMembers', { groupId: gid });
        const m = new Map();
        for (const x of r.members || []) { const n = x.displayName || x.username; S.names.set(x.userId, n); m.set(x.userId, n); }
        // Members added a moment ago may be missing from the read model yet.
        S.members.set(gid, m);
        for (const ev of recentEvents()) if (ev.aggregate === gid) applyGroupEvent(ev, false);
        renderMembers();
        return;
      } catch (e) {
        if (e.code === 'unavailable') return;
      }
    }
  }
  // renderMembers lists the open group's members, each with the admin
  // actions (the server decides who may: forbidden is shown as an error).
  function renderMembers() {
    const cid = S.current;
    if (!cid || !cid.startsWith('c/')) return;
    const gid = 'g/' + cid.slice(2), m = S.members.get(gid), el = $('members');
    el.replaceChildren();
    if (!m) return;
    el.append('members: ');
    for (const [id, n] of m) {
      const sp = document.createElement('span'); sp.className = 'member'; sp.dataset.user = id;
      sp.append(n || '…');
      if (id !== S.me) {
        const ad = document.createElement('button'); ad.type = 'button'; ad.className = 'promote'; ad.textContent = 'make admin';
        ad.addEventListener('click', async () => { if (await tryCall('setRole', { groupId: gid, userId: id, role: 'ROLE_ADMIN' })) notice((n || id) + ' is an admin now'); });
        const k = document.createElement('button'); k.type = 'button'; k.className = 'kick'; k.textContent = 'remove';
        k.addEventListener('click', async () => { if (await tryCall('kickMember', { groupId: gid, userId: id })) { m.delete(id); renderMembers(); } });
        sp.append(ad, k);
      }
      el.append(sp, ' ');
    }
  }

  // ---- sending: an outbox that survives reconnects ----
  // A message keeps its client message id until the server acknowledged
  // it, so a send retried after a dropped connection is never sent twice.
  function newClientMsgId() {
    const b = new Uint8Array(12); crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  let flushing = false;
  async function flushOutbox() {
    if (flushing) return;
    flushing = true;
    try {
      while (S.outbox.length && S.authed) {
        const o = S.outbox[0];
        let r;
        try {
          r = await call('send', o.body);
        } catch (e) {
          if (e.code === 'unavailable' || e.code === 'conflict') {
            // Again on the next connection, or in a moment if the server
            // (not the connection) was the problem.
            if (S.authed) setTimeout(flushOutbox, 1000);
            return;
          }
          if (e.code === 'rate_limited') { await later(Math.max(num(e.retryAfterMs), 50)); continue; }
          S.outbox = S.outbox.filter((x) => x !== o);
          showError('message not sent: ' + errText(e));
          if (!$('msg-input').value && o.cid === S.current) $('msg-input').value = o.text;
          if (o.cid === S.current) renderMessages('keep');
          continue;
        }
        S.outbox = S.outbox.filter((x) => x !== o);
        const m = msgMap(r.conversationId || o.cid), seq = num(r.seq);
        if (!m.has(seq)) {
          m.set(seq, { seq: r.seq, eventId: r.eventId, senderId: S.me, text: o.text, kind: 'MESSAGE_KIND_TEXT', sentAtMs: r.sentAtMs, clientMsgId: o.body.clientMsgId });
          if (r.eventId) S.seen.add(r.eventId);
          const c = conv(o.cid);
          if (seq > num(c.lastSeq)) { c.lastSeq = r.seq; c.lastMessageAtMs = r.sentAtMs; c.lastPreview = o.text; c.lastSenderId = S.me; }
          renderConvs();
        }
        if (o.cid === S.current) { renderMessages('bottom'); markRead(); }
      }
    } finally {
      flushing = false;
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
      await ensureOpen();
      await call('register', { username: u, password: p, displayName: u });
      await login(u, p);
    } catch (err) { showError(errText(err)); }
  });
  $('logout-btn').addEventListener('click', async () => {
    await tryCall('logout', {});
    sessionStorage.removeItem('mpim.token');
    resetState();
    showAuth();
  });
  $('open-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('open-user').value.trim();
    if (!name) return;
    const p = await tryCall('findUser', { username: name });
    if (!p) return;
    if (p.userId === S.me) { showError('that is you'); return; }
    S.names.set(p.userId, p.displayName || p.username);
    $('open-user').value = '';
    openConversation(directId(S.me, p.userId), p.displayName || p.username);
  });
  $('friend-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('friend-user').value.trim();
    const p = name && await tryCall('findUser', { username: name });
    if (!p) return;
    S.names.set(p.userId, p.displayName || p.username);
    if (await tryCall('requestFriend', { userId: p.userId })) {
      $('friend-user').value = '';
      if (!S.friends.has(p.userId)) S.outgoing.set(p.userId, { fromUserId: S.me, toUserId: p.userId, user: p });
      renderFriends();
    }
  });
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('group-name').value.trim();
    if (!name) return;
    const ids = [];
    for (const u of $('group-members').value.split(',').map((s) => s.trim()).filter(Boolean)) {
      const p = await tryCall('findUser', { username: u });
      if (!p) return;
      S.names.set(p.userId, p.displayName || p.username);
      if (p.userId !== S.me) ids.push(p.userId);
    }
    const r = await tryCall('createGroup', { name, memberIds: ids });
    if (!r) return;
    $('group-name').value = ''; $('group-members').value = '';
    if (!S.groups.has(r.groupId)) S.groups.set(r.groupId, { groupId: r.groupId, conversationId: r.conversationId, name });
    renderGroups();
    const c = conv(r.conversationId, name);
    c.groupId = r.groupId;
    openConversation(r.conversationId, name);
  });
  $('rename-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const cid = S.current, name = $('rename-name').value.trim();
    if (!cid || !cid.startsWith('c/') || !name) return;
    if (await tryCall('renameGroup', { groupId: 'g/' + cid.slice(2), name })) $('rename-name').value = '';
  });
  $('leave-btn').addEventListener('click', async () => {
    const cid = S.current;
    if (!cid || !cid.startsWith('c/')) return;
    const gid = 'g/' + cid.slice(2);
    if (await tryCall('leaveGroup', { groupId: gid })) {
      S.groups.delete(gid); S.convs.delete(cid); S.current = null;
      $('conv-title').textContent = 'No conversation open'; $('group-bar').hidden = true;
      $('msg-list').replaceChildren(); $('msg-input').disabled = true; $('send-btn').disabled = true;
      renderGroups(); renderConvs();
    }
  });
  $('member-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const cid = S.current, name = $('member-user').value.trim();
    if (!cid || !cid.startsWith('c/') || !name) return;
    const p = await tryCall('findUser', { username: name });
    if (!p) return;
    S.names.set(p.userId, p.displayName || p.username);
    const gid = 'g/' + cid.slice(2);
    if (await tryCall('addMember', { groupId: gid, userId: p.userId })) {
      $('member-user').value = '';
      const m = S.members.get(gid);
      if (m) { m.set(p.userId, p.displayName || p.username); renderMembers(); }
    }
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('msg-input'), text = input.value, cid = S.current;
    if (!cid) return;
    if (!text.trim()) { showError('message is empty'); return; }
    if (new TextEncoder().encode(text).length > MAX_TEXT) { showError('message is too long (16 KiB at most)'); return; }
    if (S.editing) {
      const ed = S.editing;
      if (ed.cid !== cid) { endEdit(); return; }
      tryCall('edit', { conversationId: ed.cid, seq: ed.seq, text }).then((r) => { if (r && S.editing === ed) endEdit(); });
      return;
    }
    const body = { clientMsgId: newClientMsgId(), kind: 'MESSAGE_KIND_TEXT', text };
    const peer = directPeer(cid);
    if (peer) body.userId = peer; else body.conversationId = cid;
    S.outbox.push({ cid, body, text });
    input.value = '';
    clearTimeout(S.stopTimer);
    if (S.lastTyping) { S.lastTyping = 0; call('typing', { conversationId: cid, stopped: true }).catch(() => {}); }
    renderMessages('bottom');
    if (!S.authed) showError('not connected: the message is sent once the connection is back');
    flushOutbox();
  });
  $('msg-input').addEventListener('keydown', (e) => { if (e.key === 'Escape') endEdit(); });
  $('load-older').addEventListener('click', loadOlder);
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 20) loadOlder();
  });

  // What devices.js (the Devices panel) uses of the page's connection.
  window.mpimChat = Object.freeze({ tryCall, notice });

  // ---- start ----
  (async function start() {
    const d = sessionStorage.getItem('mpim.device');
    if (d && !(await claimDevice(d))) {
      // This tab is a copy of another one (duplicated tab): the device is
      // the other tab's. Start over as a new device.
      sessionStorage.removeItem('mpim.device');
      sessionStorage.removeItem('mpim.token');
      notice('This tab is a copy of another tab: log in again (each tab is a device of its own).');
    }
    const u = sessionStorage.getItem('mpim.user');
    if (u) $('auth-user').value = u;
    if (sessionStorage.getItem('mpim.token')) connect(); else { status(''); showAuth(); }
  })();
})();
