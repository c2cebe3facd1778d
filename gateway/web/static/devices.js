// mpim web chat: the Devices panel and the change-password form
// (listDevices, logoutDevice, logoutOtherDevices, changePassword in
// docs/protocol.md). It talks through the page's connection, which app.js
// lends it as window.mpimChat; the list is loaded when a session starts and
// on demand. Device ids and platforms are put in the page with textContent.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const chat = () => window.mpimChat;
  const time = (ms) => new Date(Number(ms)).toLocaleString();

  function render(devices) {
    const list = $('devices');
    list.replaceChildren();
    for (const d of devices) {
      const li = document.createElement('li');
      li.className = 'device';
      li.dataset.device = d.deviceId;
      const name = document.createElement('span');
      name.className = 'name';
      let text = d.deviceId + (d.platform ? ' (' + d.platform + ')' : '');
      if (d.current) text += ' · this tab';
      else if (d.online) text += ' · online';
      else if (Number(d.lastSeenMs || 0) > 0) text += ' · seen ' + time(d.lastSeenMs);
      if (Number(d.loggedInAtMs || 0) > 0) name.title = 'logged in ' + time(d.loggedInAtMs);
      name.textContent = text;
      li.append(name);
      if (!d.current) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'logout-device';
        b.textContent = 'log out';
        b.addEventListener('click', async () => {
          if (await chat().tryCall('logoutDevice', { deviceId: d.deviceId })) {
            li.remove(); // the list comes from a read model that may lag a moment
            chat().notice('device ' + d.deviceId + ' logged out');
          }
        });
        li.append(b);
      }
      list.append(li);
    }
  }

  async function load() {
    const r = await chat().tryCall('listDevices', {});
    if (r) render(r.devices || []);
  }

  document.addEventListener('mpim:session', load);
  document.addEventListener('mpim:reset', () => { $('devices').replaceChildren(); $('password-form').reset(); });
  $('devices-btn').addEventListener('click', load);
  $('logout-others-btn').addEventListener('click', async () => {
    if (await chat().tryCall('logoutOtherDevices', {})) {
      for (const li of Array.from($('devices').children)) if (li.querySelector('button')) li.remove();
      chat().notice('every other device is logged out');
    }
  });
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const oldPassword = $('password-old').value, newPassword = $('password-new').value;
    if (await chat().tryCall('changePassword', { oldPassword, newPassword })) {
      $('password-form').reset();
      for (const li of Array.from($('devices').children)) if (li.querySelector('button')) li.remove();
      chat().notice('password changed; your other devices are logged out');
    }
  });
})();
