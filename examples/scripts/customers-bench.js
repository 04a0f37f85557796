// The 1M-row benchmark job: reads 5 fields, computes 5 outputs with string operations, and
// copies premium customers to a second queue. Input fields it does not set are copied.
function process(context) {
  const row = context.input.current();
  const first = row.first_name;
  const last = row.last_name;
  const email = row.email;
  const age = row.age;
  const value = row.account_value;
  const out = context.output;

  out.setField('full_name', first + ' ' + last);
  out.setField('email_domain', email.substring(email.indexOf('@') + 1));
  out.setField('initials', first.charAt(0) + last.charAt(0));
  out.setField('age_category', age < 25 ? 'Young Adult' : age < 45 ? 'Adult' : age < 65 ? 'Middle Age' : 'Senior');
  const category = value >= 100000 ? 'Premium' : value >= 50000 ? 'Gold' : value >= 10000 ? 'Silver' : 'Standard';
  out.setField('value_category', category);
  if (category === 'Premium' && age >= 65) context.route.sendCopy('premium');
  return true;
}
