// bulkbackup dashboard: live updates of a server-rendered page.
//
// The page works without this script; with it, the page follows the
// server-sent events of /events (the URL is the body's data-events) and
// rewrites the elements of each job ([data-job]) and the worker table.
// Every value arrives formatted and is written with textContent, never as
// markup.
(function () {
  'use strict';

  var body = document.body;
  var url = body.dataset.events;
  var live = document.getElementById('live');
  if (!url || !window.EventSource) {
    return;
  }

  // A job whose final state was shown never goes back to running: an older
  // snapshot may arrive after the last event.
  var ended = Object.create(null);

  function setLive(state, label) {
    if (live) {
      live.dataset.state = state;
      live.textContent = label;
    }
  }

  function setText(root, selector, value) {
    var el = root.querySelector(selector);
    if (el && typeof value === 'string') {
      el.textContent = value;
    }
  }

  function update(el, job) {
    el.dataset.state = job.state;
    setText(el, '.state', job.state);
    setText(el, '.message', job.message);
    setText(el, '.error', job.error);
    setText(el, '.bytes', job.bytes);
    setText(el, '.rate', job.rate);
    setText(el, '.eta', job.eta);
    setText(el, '.stored', job.stored);
    setText(el, '.snapshot', job.snapshot);
    setText(el, '.finished', job.finished);
    var bar = el.querySelector('progress');
    if (bar) {
      bar.max = Math.max(job.total, 1);
      bar.value = Math.min(job.done, bar.max);
    }
    if (job.final) {
      el.querySelectorAll('form.cancel').forEach(function (f) { f.remove(); });
    }
    el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
  }

  function cell(row, className) {
    var td = document.createElement('td');
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
    return td;
  }

  function span(parent, tag, className) {
    var el = document.createElement(tag);
    el.className = className;
    parent.appendChild(el);
    return el;
  }

  // addRow adds a job the page did not list (started elsewhere) to the
  // running jobs, in the same shape as the server's rows.
  function addRow(job) {
    var tbody = document.getElementById('active-jobs');
    if (!tbody) {
      return;
    }
    tbody.querySelectorAll('tr.empty').forEach(function (r) { r.remove(); });
    var row = document.createElement('tr');
    row.dataset.job = job.id;
    var link = document.createElement('a');
    link.href = '/jobs/' + encodeURIComponent(job.id);
    link.title = job.id;
    link.textContent = job.short;
    cell(row, 'id').appendChild(link);
    cell(row, 'kind').textContent = job.kind;
    cell(row, 'what');
    var state = cell(row);
    span(state, 'span', 'state');
    span(state, 'div', 'message');
    span(state, 'div', 'error');
    var progress = cell(row, 'progress');
    progress.appendChild(document.createElement('progress'));
    progress.appendChild(document.createTextNode(' '));
    span(progress, 'span', 'bytes');
    cell(row, 'rate');
    cell(row, 'eta');
    var actions = cell(row);
    if (body.dataset.csrf && !job.final) {
      var form = document.createElement('form');
      form.method = 'post';
      form.action = '/actions/cancel';
      form.className = 'inline cancel';
      [['csrf', body.dataset.csrf], ['job', job.id]].forEach(function (kv) {
        var input = document.createElement('input');
        input.type = 'hidden';
        input.name = kv[0];
        input.value = kv[1];
        form.appendChild(input);
      });
      var button = document.createElement('button');
      button.type = 'submit';
      button.className = 'danger';
      button.textContent = 'Cancel';
      form.appendChild(button);
      actions.appendChild(form);
    }
    tbody.insertBefore(row, tbody.firstChild);
    return row;
  }

  function onJob(job) {
    if (ended[job.id] && !job.final) {
      return;
    }
    if (job.final) {
      ended[job.id] = true;
    }
    var found = false;
    document.querySelectorAll('[data-job]').forEach(function (el) {
      if (el.dataset.job === job.id) {
        found = true;
        update(el, job);
      }
    });
    if (!found && !job.final) {
      var row = addRow(job);
      if (row) {
        update(row, job);
      }
    }
  }

  function onWorkers(workers) {
    var tbody = document.getElementById('worker-rows');
    if (!tbody) {
      return;
    }
    var rows = workers.map(function (w) {
      var row = document.createElement('tr');
      row.dataset.worker = w.id;
      [w.role, w.host, String(w.workers), String(w.in_flight), w.rate, w.handled, w.version, w.last_seen]
        .forEach(function (v) { cell(row).textContent = v; });
      return row;
    });
    if (rows.length === 0) {
      var empty = document.createElement('tr');
      empty.className = 'empty';
      var td = cell(empty);
      td.colSpan = 8;
      td.textContent = 'No reader or compressor is running.';
      rows.push(empty);
    }
    tbody.replaceChildren.apply(tbody, rows);
  }

  var received = 0;
  function handle(fn) {
    return function (e) {
      var data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      received++;
      body.dataset.received = String(received);
      fn(data);
    };
  }

  var source = new EventSource(url);
  source.onopen = function () { setLive('open', 'live'); };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      setLive('closed', 'offline');
    } else {
      setLive('reconnecting', 'reconnecting');
    }
  };
  source.addEventListener('job', handle(onJob));
  source.addEventListener('workers', handle(onWorkers));
})();
